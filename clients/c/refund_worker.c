/*
 * refund_worker.c - follows creditd's event feed with ListEvents long polls,
 * picks out the credits that became refund_pending, "pays" them (here: prints
 * a line) and reports the result with RecordRefundOutcome.
 *
 *   cc refund_worker.c $(pkg-config --cflags --libs creditd-client)
 *   ./a.out [-a AFTER_SEQ] [-n COUNT] [-w WAIT_SECONDS] [-i IDLE_POLLS] [socket-path]
 *
 *   -a  start after this sequence number (default 0: the oldest kept event);
 *       the worker prints "resume -a N" lines, so a restarted worker goes on
 *       where the last one stopped
 *   -n  exit after paying COUNT credits (default: run until killed)
 *   -w  seconds each long poll waits for a new event (1-60, default 30)
 *   -i  exit after IDLE_POLLS long polls in a row brought nothing (default: never)
 *
 * A credit reported twice is harmless: creditd ignores an outcome for a
 * credit that is no longer refund_pending (L9), so replaying the feed after a
 * crash pays nothing twice as long as the payment itself is idempotent.
 *
 * Exit status: 0 done, 1 the daemon cannot be reached, 2 a call failed.
 */
#define _POSIX_C_SOURCE 200809L /* getopt */
#include <creditd_client.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int report(const char *what, const creditd_error *err) {
    fprintf(stderr, "refund_worker: %s: %s (%s", what, err->message, creditd_code_name(err->code));
    if (err->reason[0] != '\0') fprintf(stderr, ", reason %s", err->reason);
    fprintf(stderr, ")\n");
    return 2;
}

/* "Pays" one credit: a real worker calls its payment provider here, with the
 * credit id as the provider's idempotency key. */
static int pay(const Creditd__V1__Credit *credit) {
    printf("paying %s of %s: %lld minor units of %s\n", credit->credit_id, credit->subscription_id,
           (long long)credit->remaining_minor, credit->currency);
    return 1; /* succeeded */
}

int main(int argc, char **argv) {
    long long after = 0, count = -1, idle_limit = -1;
    int wait_seconds = 30, opt;
    while ((opt = getopt(argc, argv, "a:n:w:i:")) != -1) {
        switch (opt) {
        case 'a': after = atoll(optarg); break;
        case 'n': count = atoll(optarg); break;
        case 'w': wait_seconds = atoi(optarg); break;
        case 'i': idle_limit = atoll(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-a AFTER_SEQ] [-n COUNT] [-w WAIT_SECONDS] [-i IDLE_POLLS] [socket-path]\n", argv[0]);
            return 2;
        }
    }
    if (wait_seconds < 1 || wait_seconds > 60 || after < 0) {
        fprintf(stderr, "refund_worker: -w must be 1-60 and -a 0 or more\n");
        return 2;
    }
    const char *socket_path = optind < argc ? argv[optind] : "/run/creditd/creditd.sock";
    creditd_client *client = NULL;
    creditd_error err;
    if (creditd_connect(socket_path, 5000, &client, &err) != CREDITD_OK) {
        fprintf(stderr, "refund_worker: %s\n", err.message);
        return 1;
    }

    int status = 0;
    long long paid = 0, idle = 0;
    /* Only credit_state_changed events: the feed skips the rest server-side. */
    Creditd__V1__EventType types[] = {CREDITD__V1__EVENT_TYPE__EVENT_TYPE_CREDIT_STATE_CHANGED};
    while (count < 0 || paid < count) {
        Creditd__V1__ListEventsRequest request = CREDITD__V1__LIST_EVENTS_REQUEST__INIT;
        request.after_seq = after;
        request.limit = 100;
        request.wait_seconds = wait_seconds;
        request.n_types = 1;
        request.types = types;
        Creditd__V1__ListEventsResponse *page = NULL;
        /* The call's deadline must outlast the long poll. */
        if (creditd_list_events(client, &request, &page, (wait_seconds + 10) * 1000, &err) != CREDITD_OK) {
            status = report("ListEvents", &err);
            break;
        }
        idle = page->n_events == 0 ? idle + 1 : 0;
        for (size_t i = 0; i < page->n_events && status == 0; i++) {
            const Creditd__V1__Event *event = page->events[i];
            if (event->credit_state == NULL || event->credit == NULL ||
                event->credit_state->state != CREDITD__V1__CREDIT_STATE__CREDIT_STATE_REFUND_PENDING) {
                continue;
            }
            /* The event carries the credit as it was then; payment is for what
             * was left to refund at that moment. */
            Creditd__V1__RecordRefundOutcomeRequest outcome = CREDITD__V1__RECORD_REFUND_OUTCOME_REQUEST__INIT;
            outcome.subscription_id = event->credit->subscription_id;
            outcome.credit_id = event->credit->credit_id;
            outcome.outcome = pay(event->credit) ? CREDITD__V1__REFUND_OUTCOME__REFUND_OUTCOME_SUCCEEDED
                                                 : CREDITD__V1__REFUND_OUTCOME__REFUND_OUTCOME_FAILED;
            Creditd__V1__RecordRefundOutcomeResponse *recorded = NULL;
            if (creditd_record_refund_outcome(client, &outcome, &recorded, 5000, &err) != CREDITD_OK) {
                status = report("RecordRefundOutcome", &err);
                break;
            }
            printf("refunded %s of %s: refunded %lld, remaining %lld%s\n", event->credit->credit_id,
                   event->credit->subscription_id, (long long)recorded->refunded_minor,
                   (long long)recorded->remaining_minor,
                   recorded->ignored ? " (ignored: no longer refund_pending)" : "");
            creditd__v1__record_refund_outcome_response__free_unpacked(recorded, NULL);
            paid++;
            if (count < 0 || paid < count) continue;
            /* Done: resume after this very event next time. */
            page->next_after_seq = event->seq;
            break;
        }
        if (status == 0) after = (long long)page->next_after_seq;
        creditd__v1__list_events_response__free_unpacked(page, NULL);
        if (status != 0) break;
        printf("resume -a %lld\n", after);
        fflush(stdout);
        if (idle_limit >= 0 && idle >= idle_limit) break;
    }
    creditd_close(client);
    return status;
}
