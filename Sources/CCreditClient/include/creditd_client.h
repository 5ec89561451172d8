/*
 * creditd_client.h - blocking C client for the creditd daemon.
 *
 * creditd serves its API (proto/creditd/v1/credits.proto) over ttrpc on a
 * local Unix stream socket. This library opens one connection, sends one
 * unary call at a time and waits for its answer.
 *
 * Messages are the protobuf-c structs of the generated headers included
 * below. Every call takes a request struct (initialise it with the generated
 * *_init function or *__INIT macro) and, on success, stores a newly
 * allocated response struct in *resp. Free it with the matching generated
 * *__free_unpacked(resp, NULL), or with creditd_message_free(resp).
 *
 * Results: every call returns CREDITD_OK (0) or a creditd_error_kind, and
 * fills *err (when err is not NULL) with the details. Nothing aborts, exits,
 * prints or raises a signal (writes use MSG_NOSIGNAL, so a vanished daemon
 * gives an error, not SIGPIPE).
 *
 * Threads: there is no global state. A creditd_client is thread-compatible,
 * not thread-safe: use one connection per thread, or serialise all calls on
 * one connection with your own lock. Distinct clients never interfere.
 *
 * Timeouts: timeout_ms > 0 bounds the whole call (send and receive); the
 * server is told the time left (ttrpc timeout_nano) and the client gives up
 * locally at the deadline. timeout_ms <= 0 means no deadline.
 *
 * Connection state after an error:
 * - CREDITD_ERR_STATUS, CREDITD_ERR_TIMEOUT and CREDITD_ERR_INVALID_ARGUMENT
 *   leave the connection usable. A reply that arrives after its call timed
 *   out is recognised by its stream id and dropped.
 * - CREDITD_ERR_PROTOCOL leaves it usable when the frame itself was sound
 *   (only its contents were undecodable); a broken frame stream makes the
 *   connection unusable.
 * - CREDITD_ERR_CLOSED, CREDITD_ERR_IO, and a broken frame stream make the
 *   connection unusable: later calls fail with CREDITD_ERR_CLOSED. Call
 *   creditd_close() and connect again. creditd_is_usable() tells.
 */
#ifndef CREDITD_CLIENT_H
#define CREDITD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "../proto/creditd/v1/credits.pb-c.h"
#include "../proto/grpc/health/v1/health.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CREDITD_CLIENT_VERSION "1.0.0"

/* The ttrpc frame limit: a frame carries at most this many bytes of data. */
#define CREDITD_MAX_FRAME_LENGTH 4194304u

/* What went wrong. CREDITD_OK is 0; everything else is a failure. */
typedef enum creditd_error_kind {
    CREDITD_OK = 0,
    /* The server answered with a non-OK gRPC status: see code, message and
     * reason. */
    CREDITD_ERR_STATUS = 1,
    /* socket() or connect() failed; sys_errno says why (ENOENT: no socket
     * at that path, ECONNREFUSED: nobody listening, EACCES: permissions). */
    CREDITD_ERR_CONNECT = 2,
    /* The local deadline passed before the answer arrived. */
    CREDITD_ERR_TIMEOUT = 3,
    /* The server sent something this library cannot read: an oversized or
     * malformed frame, an undecodable envelope or response payload. */
    CREDITD_ERR_PROTOCOL = 4,
    /* The server closed the connection (possibly mid-frame), or this
     * connection was already unusable. */
    CREDITD_ERR_CLOSED = 5,
    /* A read or write on the socket failed; sys_errno says why. */
    CREDITD_ERR_IO = 6,
    /* The caller passed something unusable: a NULL pointer, a message that
     * does not fit in a frame, a socket path that is too long. */
    CREDITD_ERR_INVALID_ARGUMENT = 7,
    /* An allocation failed. */
    CREDITD_ERR_NO_MEMORY = 8
} creditd_error_kind;

/* gRPC status codes (docs/wire-protocol.md section 8). */
enum {
    CREDITD_CODE_OK = 0,
    CREDITD_CODE_CANCELLED = 1,
    CREDITD_CODE_UNKNOWN = 2,
    CREDITD_CODE_INVALID_ARGUMENT = 3,
    CREDITD_CODE_DEADLINE_EXCEEDED = 4,
    CREDITD_CODE_NOT_FOUND = 5,
    CREDITD_CODE_ALREADY_EXISTS = 6,
    CREDITD_CODE_PERMISSION_DENIED = 7,
    CREDITD_CODE_RESOURCE_EXHAUSTED = 8,
    CREDITD_CODE_FAILED_PRECONDITION = 9,
    CREDITD_CODE_ABORTED = 10,
    CREDITD_CODE_OUT_OF_RANGE = 11,
    CREDITD_CODE_UNIMPLEMENTED = 12,
    CREDITD_CODE_INTERNAL = 13,
    CREDITD_CODE_UNAVAILABLE = 14,
    CREDITD_CODE_DATA_LOSS = 15,
    CREDITD_CODE_UNAUTHENTICATED = 16
};

/*
 * The outcome of a call. Plain data with fixed-size buffers: it needs no
 * freeing and may live on the stack.
 */
typedef struct creditd_error {
    /* CREDITD_OK or what went wrong. */
    creditd_error_kind kind;
    /* The gRPC status code. For CREDITD_ERR_STATUS it is the server's code.
     * Local failures get the code a gRPC client would report, so callers
     * that branch on the code alone still work: TIMEOUT ->
     * DEADLINE_EXCEEDED, CONNECT/CLOSED/IO -> UNAVAILABLE, PROTOCOL ->
     * INTERNAL, INVALID_ARGUMENT -> INVALID_ARGUMENT, NO_MEMORY ->
     * RESOURCE_EXHAUSTED. 0 on success. */
    int code;
    /* errno of the failing system call (CONNECT, IO), else 0. */
    int sys_errno;
    /* The status message from the server, or a description of the local
     * failure; NUL-terminated, truncated to fit. */
    char message[512];
    /* The machine-readable reason, e.g. "subscription_not_found": taken
     * from the creditd.v1.ErrorReason detail of the status, or else from a
     * "<reason>: " prefix of the message. Empty when there is none or the
     * failure is local. */
    char reason[128];
} creditd_error;

/* An open connection. Opaque. */
typedef struct creditd_client creditd_client;

/* A short constant name for a kind, e.g. "CREDITD_ERR_TIMEOUT". */
const char *creditd_error_kind_name(creditd_error_kind kind);

/* A short constant name for a gRPC code, e.g. "NOT_FOUND"; "UNKNOWN_CODE"
 * for values outside 0-16. */
const char *creditd_code_name(int code);

/*
 * Connects to the daemon's Unix socket at socket_path. timeout_ms > 0
 * bounds the connect; <= 0 waits as long as it takes. On success stores a
 * new client in *out (close it with creditd_close) and returns CREDITD_OK;
 * otherwise *out is set to NULL.
 */
int creditd_connect(const char *socket_path, int timeout_ms,
                    creditd_client **out, creditd_error *err);

/* Closes the connection and frees the client. NULL is ignored. */
void creditd_close(creditd_client *client);

/* 1 while the connection can carry calls, 0 once it cannot (see above). */
int creditd_is_usable(const creditd_client *client);

/*
 * The generic unary call. service is the fully-qualified service name
 * ("creditd.v1.Credits"), method the bare method name ("GetSubscription").
 * req is encoded; on success the response payload is decoded with
 * resp_desc and stored in *resp (free it with creditd_message_free or the
 * generated *__free_unpacked). On failure *resp is NULL.
 */
int creditd_call(creditd_client *client, const char *service,
                 const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc,
                 ProtobufCMessage **resp, int timeout_ms, creditd_error *err);

/*
 * The same call on encoded messages: req/req_len are the encoded request
 * (req may be NULL when req_len is 0). On success *resp is a malloc'ed copy
 * of the encoded response payload (free it with creditd_bytes_free; it may
 * be NULL when *resp_len is 0, an empty message). Useful for bindings that
 * bring their own protobuf library.
 */
int creditd_call_bytes(creditd_client *client, const char *service,
                       const char *method, const uint8_t *req,
                       size_t req_len, uint8_t **resp, size_t *resp_len,
                       int timeout_ms, creditd_error *err);

/* Frees a response from creditd_call or a per-method call. NULL is ignored. */
void creditd_message_free(void *message);

/* Frees bytes from creditd_call_bytes. NULL is ignored. */
void creditd_bytes_free(uint8_t *bytes);

/* ----------------------------------------------- creditd.v1.Credits */

int creditd_create_subscription(creditd_client *client,
                                const Creditd__V1__CreateSubscriptionRequest *req,
                                Creditd__V1__CreateSubscriptionResponse **resp,
                                int timeout_ms, creditd_error *err);
int creditd_get_subscription(creditd_client *client,
                             const Creditd__V1__GetSubscriptionRequest *req,
                             Creditd__V1__GetSubscriptionResponse **resp,
                             int timeout_ms, creditd_error *err);
int creditd_list_subscriptions(creditd_client *client,
                               const Creditd__V1__ListSubscriptionsRequest *req,
                               Creditd__V1__ListSubscriptionsResponse **resp,
                               int timeout_ms, creditd_error *err);
int creditd_cancel_subscription(creditd_client *client,
                                const Creditd__V1__CancelSubscriptionRequest *req,
                                Creditd__V1__CancelSubscriptionResponse **resp,
                                int timeout_ms, creditd_error *err);
int creditd_resume_subscription(creditd_client *client,
                                const Creditd__V1__ResumeSubscriptionRequest *req,
                                Creditd__V1__ResumeSubscriptionResponse **resp,
                                int timeout_ms, creditd_error *err);
int creditd_change_seats(creditd_client *client,
                         const Creditd__V1__ChangeSeatsRequest *req,
                         Creditd__V1__ChangeSeatsResponse **resp,
                         int timeout_ms, creditd_error *err);
int creditd_get_refund_status(creditd_client *client,
                              const Creditd__V1__GetRefundStatusRequest *req,
                              Creditd__V1__GetRefundStatusResponse **resp,
                              int timeout_ms, creditd_error *err);
int creditd_list_invoices(creditd_client *client,
                          const Creditd__V1__ListInvoicesRequest *req,
                          Creditd__V1__ListInvoicesResponse **resp,
                          int timeout_ms, creditd_error *err);
int creditd_record_refund_outcome(creditd_client *client,
                                  const Creditd__V1__RecordRefundOutcomeRequest *req,
                                  Creditd__V1__RecordRefundOutcomeResponse **resp,
                                  int timeout_ms, creditd_error *err);
/* O5: a subscription from another billing system, with its billing dates.
 * A repeated import fails with reason "subscription_exists". */
int creditd_import_subscription(creditd_client *client,
                                const Creditd__V1__ImportSubscriptionRequest *req,
                                Creditd__V1__ImportSubscriptionResponse **resp,
                                int timeout_ms, creditd_error *err);
/* Q1: credits across all subscriptions, filtered and paged. */
int creditd_list_credits(creditd_client *client,
                         const Creditd__V1__ListCreditsRequest *req,
                         Creditd__V1__ListCreditsResponse **resp,
                         int timeout_ms, creditd_error *err);
/* E4: the event feed after req->after_seq. With req->wait_seconds > 0 this is
 * a long poll: it answers as soon as a matching event commits, or empty after
 * the wait; give a timeout_ms longer than the wait (e.g. wait + 10 s).
 * Continue from resp->next_after_seq. */
int creditd_list_events(creditd_client *client,
                        const Creditd__V1__ListEventsRequest *req,
                        Creditd__V1__ListEventsResponse **resp,
                        int timeout_ms, creditd_error *err);

/* -------------------------------------------------- creditd.v1.Admin */

int creditd_get_stats(creditd_client *client,
                      const Creditd__V1__GetStatsRequest *req,
                      Creditd__V1__GetStatsResponse **resp,
                      int timeout_ms, creditd_error *err);
int creditd_take_snapshot(creditd_client *client,
                          const Creditd__V1__TakeSnapshotRequest *req,
                          Creditd__V1__TakeSnapshotResponse **resp,
                          int timeout_ms, creditd_error *err);
int creditd_get_clock(creditd_client *client,
                      const Creditd__V1__GetClockRequest *req,
                      Creditd__V1__GetClockResponse **resp,
                      int timeout_ms, creditd_error *err);
int creditd_advance_clock(creditd_client *client,
                          const Creditd__V1__AdvanceClockRequest *req,
                          Creditd__V1__AdvanceClockResponse **resp,
                          int timeout_ms, creditd_error *err);
int creditd_reload(creditd_client *client,
                   const Creditd__V1__ReloadRequest *req,
                   Creditd__V1__ReloadResponse **resp,
                   int timeout_ms, creditd_error *err);
int creditd_get_metrics(creditd_client *client,
                        const Creditd__V1__GetMetricsRequest *req,
                        Creditd__V1__GetMetricsResponse **resp,
                        int timeout_ms, creditd_error *err);

/* ---------------------------------------------- grpc.health.v1.Health */

int creditd_health_check(creditd_client *client,
                         const Grpc__Health__V1__HealthCheckRequest *req,
                         Grpc__Health__V1__HealthCheckResponse **resp,
                         int timeout_ms, creditd_error *err);

#ifdef __cplusplus
}
#endif

#endif /* CREDITD_CLIENT_H */
