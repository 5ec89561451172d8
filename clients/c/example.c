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

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 5000

static int report(const char *what, const creditd_error *err) {
    fprintf(stderr, "%s: %s (%s", what, err->message, creditd_code_name(err->code));
    if (err->reason[0] != '\0') fprintf(stderr, ", reason %s", err->reason);
    fprintf(stderr, ")\n");
    return 2;
}

static const char *credit_state_name(int state) {
    const ProtobufCEnumValue *value =
        protobuf_c_enum_descriptor_get_value(&creditd__v1__credit_state__descriptor, state);
    return value != NULL ? value->name : "?";
}

int main(int argc, char **argv) {
    const char *socket_path = argc > 1 ? argv[1] : "/run/creditd/creditd.sock";
    creditd_client *client = NULL;
    creditd_error err;
    int status = 0;

    if (creditd_connect(socket_path, TIMEOUT_MS, &client, &err) != CREDITD_OK) {
        fprintf(stderr, "cannot connect to %s: %s\n", socket_path, err.message);
        return 1;
    }

    char subscription_id[64];
    snprintf(subscription_id, sizeof subscription_id, "example-%ld-%ld", (long)getpid(),
             (long)time(NULL));

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
    seats.idempotency_key = "example-seats-1";
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
    cancel.idempotency_key = "example-cancel-1";
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
    printf("credits of %s as of %s:\n", standing->subscription_id, standing->as_of_date);
    for (size_t i = 0; i < standing->n_credits; i++) {
        const Creditd__V1__Credit *credit = standing->credits[i];
        /* Minor units: print them as they are, never through floating point. */
        printf("  %s  amount %lld %s (minor units)  state %s  expected by %s\n",
               credit->credit_id, (long long)credit->amount_minor, credit->currency,
               credit_state_name(credit->state), credit->expected_by);
    }
    creditd__v1__get_refund_status_response__free_unpacked(standing, NULL);

done:
    creditd_close(client);
    return status;
}
