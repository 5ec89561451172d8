/*
 * example.c - creates a subscription, reduces its seats, cancels it and
 * prints where its credits stand.
 *
 *   cc example.c $(pkg-config --cflags --libs creditd-client)
 *   ./a.out [socket-path]      (default /run/creditd/creditd.sock)
 *
 * Exit status: 0 on success, 1 when the daemon cannot be reached, 2 when a
 * call fails.
 */
#include <creditd_client.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 5000

static int report(const char *what, const creditd_error *err) {
    fprintf(stderr, "%s: %s (%s", what, err->message, creditd_code_name(err->code));
    if (err->reason[0] != '\0') fprintf(stderr, ", reason %s", err->reason);
    fprintf(stderr, ")\n");
    return 2;
}

/* The proto name of an enum value without its prefix, in lower case:
 * CREDIT_STATE_REFUND_PENDING -> "refund_pending". */
static const char *enum_name(const ProtobufCEnumDescriptor *descriptor, int value,
                             const char *prefix, char *buf, size_t size) {
    const ProtobufCEnumValue *found = protobuf_c_enum_descriptor_get_value(descriptor, value);
    if (found == NULL) return "?";
    const char *name = found->name;
    if (strncmp(name, prefix, strlen(prefix)) == 0) name += strlen(prefix);
    size_t i = 0;
    for (; name[i] != '\0' && i + 1 < size; i++) buf[i] = (char)tolower((unsigned char)name[i]);
    buf[i] = '\0';
    return buf;
}

int main(int argc, char **argv) {
    const char *socket_path = argc > 1 ? argv[1] : "/run/creditd/creditd.sock";
    creditd_client *client = NULL;
    creditd_error err;
    int status = 0;

    if (creditd_connect(socket_path, TIMEOUT_MS, &client, &err) != CREDITD_OK) {
        fprintf(stderr, "example: %s\n", err.message); /* names the path and errno */
        return 1;
    }

    /* Ids and idempotency keys are unique per run: a key that comes back
     * with a different request is refused (idempotency_key_reused). */
    char subscription_id[64], seats_key[80], cancel_key[80];
    snprintf(subscription_id, sizeof subscription_id, "example-%ld-%ld", (long)getpid(),
             (long)time(NULL));
    snprintf(seats_key, sizeof seats_key, "%s-seats", subscription_id);
    snprintf(cancel_key, sizeof cancel_key, "%s-cancel", subscription_id);

    /* 1. A monthly subscription of 5 seats at 10.00 USD per seat. */
    Creditd__V1__CreateSubscriptionRequest create = CREDITD__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    create.subscription_id = subscription_id;
    create.customer = "example-customer";
    create.plan = "team";
    create.seats = 5;
    create.unit_price_minor = 1000;
    create.currency = "USD";
    create.interval = CREDITD__V1__BILLING_INTERVAL__BILLING_INTERVAL_MONTHLY;
    create.time_zone = "UTC";
    create.refund_policy = CREDITD__V1__REFUND_POLICY__REFUND_POLICY_ANYTIME;
    Creditd__V1__CreateSubscriptionResponse *created = NULL;
    if (creditd_create_subscription(client, &create, &created, TIMEOUT_MS, &err) != CREDITD_OK) {
        status = report("CreateSubscription", &err);
        goto done;
    }
    printf("created %s: %lld seats, next billing %s\n", created->subscription->subscription_id,
           (long long)created->subscription->seats, created->subscription->next_billing_date);
    creditd__v1__create_subscription_response__free_unpacked(created, NULL);

    /* 2. Down to 3 seats now: a prorated credit. */
    Creditd__V1__ChangeSeatsRequest seats = CREDITD__V1__CHANGE_SEATS_REQUEST__INIT;
    seats.subscription_id = subscription_id;
    seats.new_seats = 3;
    seats.timing = CREDITD__V1__SEAT_CHANGE_TIMING__SEAT_CHANGE_TIMING_NOW;
    seats.idempotency_key = seats_key;
    Creditd__V1__ChangeSeatsResponse *changed = NULL;
    if (creditd_change_seats(client, &seats, &changed, TIMEOUT_MS, &err) != CREDITD_OK) {
        status = report("ChangeSeats", &err);
        goto done;
    }
    printf("seats %lld -> %lld\n", (long long)changed->previous_seats, (long long)changed->seats);
    creditd__v1__change_seats_response__free_unpacked(changed, NULL);

    /* 3. Cancel immediately. */
    Creditd__V1__CancelSubscriptionRequest cancel = CREDITD__V1__CANCEL_SUBSCRIPTION_REQUEST__INIT;
    cancel.subscription_id = subscription_id;
    cancel.mode = CREDITD__V1__CANCEL_MODE__CANCEL_MODE_IMMEDIATE;
    cancel.idempotency_key = cancel_key;
    Creditd__V1__CancelSubscriptionResponse *cancelled = NULL;
    if (creditd_cancel_subscription(client, &cancel, &cancelled, TIMEOUT_MS, &err) != CREDITD_OK) {
        status = report("CancelSubscription", &err);
        goto done;
    }
    if (cancelled->cancellation != NULL) {
        printf("cancelled, effective %s\n", cancelled->cancellation->effective_date);
    }
    creditd__v1__cancel_subscription_response__free_unpacked(cancelled, NULL);

    /* 4. Where the credits stand. */
    Creditd__V1__GetRefundStatusRequest refunds = CREDITD__V1__GET_REFUND_STATUS_REQUEST__INIT;
    refunds.subscription_id = subscription_id;
    Creditd__V1__GetRefundStatusResponse *standing = NULL;
    if (creditd_get_refund_status(client, &refunds, &standing, TIMEOUT_MS, &err) != CREDITD_OK) {
        status = report("GetRefundStatus", &err);
        goto done;
    }
    /* Money stays in integer minor units (cents for USD): printed as they
     * are, never through floating point. */
    printf("refund status of %s as of %s (amounts in minor units of %s):\n",
           standing->subscription_id, standing->as_of_date, standing->currency);
    for (size_t i = 0; i < standing->n_credits; i++) {
        const Creditd__V1__Credit *credit = standing->credits[i];
        char source[32], state[32];
        printf("  %s  %-11s  %-14s  amount %lld  remaining %lld  due %s  deadline %s  expected by %s%s\n",
               credit->credit_id,
               enum_name(&creditd__v1__credit_source__descriptor, credit->source, "CREDIT_SOURCE_",
                         source, sizeof source),
               enum_name(&creditd__v1__credit_state__descriptor, credit->state, "CREDIT_STATE_",
                         state, sizeof state),
               (long long)credit->amount_minor, (long long)credit->remaining_minor,
               credit->due_date, credit->deadline, credit->expected_by,
               credit->overdue ? "  OVERDUE" : "");
    }
    if (standing->totals != NULL) {
        const Creditd__V1__CreditTotals *totals = standing->totals;
        printf("  totals: pending %lld, applied %lld, consumed %lld, refund pending %lld, refunded %lld\n",
               (long long)totals->pending_minor, (long long)totals->applied_minor,
               (long long)totals->consumed_minor, (long long)totals->refund_pending_minor,
               (long long)totals->refunded_minor);
    }
    creditd__v1__get_refund_status_response__free_unpacked(standing, NULL);

done:
    creditd_close(client);
    return status;
}
