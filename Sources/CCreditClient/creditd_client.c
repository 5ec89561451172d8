/*
 * creditd_client.c - ttrpc over a Unix stream socket, one unary call at a
 * time. The wire format is the one of docs/wire-protocol.md: a 10-byte big-endian header
 * (length, stream id, type, flags), at most 4 MiB of data, odd increasing
 * stream ids, and a ttrpc.Response envelope ending each call.
 */
#define _GNU_SOURCE 1

#include "creditd_client.h"

#include "google/rpc/status.pb-c.h"
#include "ttrpc/request.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HEADER_LENGTH 10
#define TYPE_REQUEST 0x01
#define TYPE_RESPONSE 0x02
#define LAST_STREAM_ID 0xFFFFFFFFu
#define ERROR_REASON_TYPE_URL "type.googleapis.com/creditd.v1.ErrorReason"

#ifdef MSG_NOSIGNAL
#define SEND_FLAGS MSG_NOSIGNAL
#else
#define SEND_FLAGS 0 /* platforms without it get SO_NOSIGPIPE at connect */
#endif

/*
 * The reader keeps its position inside the current frame across calls: a
 * call that times out mid-frame leaves the rest of that frame for the next
 * call, which then skips it by its (stale) stream id.
 */
struct creditd_client {
    int fd;
    int usable;
    uint64_t next_stream_id; /* 64 bits so that running past 2^32-1 is visible */

    uint8_t header[HEADER_LENGTH];
    size_t header_have;   /* bytes of header read; HEADER_LENGTH = in a body */
    uint32_t frame_length;
    uint32_t frame_stream_id;
    uint8_t frame_type;
    uint8_t *body;        /* NULL while discarding the body */
    size_t body_have;
};

/* ------------------------------------------------------------ errors */

static int code_for_kind(creditd_error_kind kind) {
    switch (kind) {
    case CREDITD_OK: return CREDITD_CODE_OK;
    case CREDITD_ERR_STATUS: return CREDITD_CODE_UNKNOWN;
    case CREDITD_ERR_TIMEOUT: return CREDITD_CODE_DEADLINE_EXCEEDED;
    case CREDITD_ERR_CONNECT:
    case CREDITD_ERR_CLOSED:
    case CREDITD_ERR_IO: return CREDITD_CODE_UNAVAILABLE;
    case CREDITD_ERR_PROTOCOL: return CREDITD_CODE_INTERNAL;
    case CREDITD_ERR_INVALID_ARGUMENT: return CREDITD_CODE_INVALID_ARGUMENT;
    case CREDITD_ERR_NO_MEMORY: return CREDITD_CODE_RESOURCE_EXHAUSTED;
    }
    return CREDITD_CODE_UNKNOWN;
}

static void clear_error(creditd_error *err) {
    if (err == NULL) return;
    memset(err, 0, sizeof *err);
}

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int fail(creditd_error *err, creditd_error_kind kind, int sys_errno,
                const char *format, ...) {
    if (err != NULL) {
        va_list args;
        memset(err, 0, sizeof *err);
        err->kind = kind;
        err->code = code_for_kind(kind);
        err->sys_errno = sys_errno;
        va_start(args, format);
        vsnprintf(err->message, sizeof err->message, format, args);
        va_end(args);
    }
    return (int)kind;
}

const char *creditd_error_kind_name(creditd_error_kind kind) {
    switch (kind) {
    case CREDITD_OK: return "CREDITD_OK";
    case CREDITD_ERR_STATUS: return "CREDITD_ERR_STATUS";
    case CREDITD_ERR_CONNECT: return "CREDITD_ERR_CONNECT";
    case CREDITD_ERR_TIMEOUT: return "CREDITD_ERR_TIMEOUT";
    case CREDITD_ERR_PROTOCOL: return "CREDITD_ERR_PROTOCOL";
    case CREDITD_ERR_CLOSED: return "CREDITD_ERR_CLOSED";
    case CREDITD_ERR_IO: return "CREDITD_ERR_IO";
    case CREDITD_ERR_INVALID_ARGUMENT: return "CREDITD_ERR_INVALID_ARGUMENT";
    case CREDITD_ERR_NO_MEMORY: return "CREDITD_ERR_NO_MEMORY";
    }
    return "CREDITD_ERR_UNKNOWN_KIND";
}

const char *creditd_code_name(int code) {
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
        "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    };
    if (code < 0 || code >= (int)(sizeof names / sizeof names[0])) return "UNKNOWN_CODE";
    return names[code];
}

/* Copies at most size-1 bytes of a possibly unterminated string. */
static void copy_text(char *dst, size_t size, const char *src, size_t length) {
    if (length >= size) length = size - 1;
    if (length > 0) memcpy(dst, src, length);
    dst[length] = '\0';
}

/* A "<reason>: " prefix counts only when it looks like a stable code:
 * a lowercase letter, then lowercase letters, digits or underscores. */
static size_t reason_prefix_length(const char *message) {
    size_t i = 0;
    if (message == NULL || !(message[0] >= 'a' && message[0] <= 'z')) return 0;
    while ((message[i] >= 'a' && message[i] <= 'z') ||
           (message[i] >= '0' && message[i] <= '9') || message[i] == '_') {
        i++;
    }
    return (message[i] == ':' && message[i + 1] == ' ') ? i : 0;
}

static int fail_with_status(creditd_error *err, const Google__Rpc__Status *status) {
    if (err == NULL) return CREDITD_ERR_STATUS;
    memset(err, 0, sizeof *err);
    err->kind = CREDITD_ERR_STATUS;
    err->code = status->code;
    if (status->message != NULL) {
        copy_text(err->message, sizeof err->message, status->message,
                  strlen(status->message));
    }
    for (size_t i = 0; i < status->n_details && err->reason[0] == '\0'; i++) {
        const Google__Protobuf__Any *detail = status->details[i];
        if (detail == NULL || detail->type_url == NULL ||
            strcmp(detail->type_url, ERROR_REASON_TYPE_URL) != 0) {
            continue;
        }
        Creditd__V1__ErrorReason *reason =
            creditd__v1__error_reason__unpack(NULL, detail->value.len, detail->value.data);
        if (reason == NULL) continue; /* a broken detail falls back to the message */
        if (reason->reason != NULL) {
            copy_text(err->reason, sizeof err->reason, reason->reason, strlen(reason->reason));
        }
        creditd__v1__error_reason__free_unpacked(reason, NULL);
    }
    if (err->reason[0] == '\0') {
        size_t length = reason_prefix_length(status->message);
        if (length > 0) copy_text(err->reason, sizeof err->reason, status->message, length);
    }
    return CREDITD_ERR_STATUS;
}

/* ------------------------------------------------------------ time */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* deadline 0 means none. */
static int64_t deadline_after(int timeout_ms) {
    if (timeout_ms <= 0) return 0;
    return now_ns() + (int64_t)timeout_ms * 1000000;
}

/* The poll() timeout until the deadline: -1 without one, 0 once past. */
static int poll_timeout(int64_t deadline) {
    if (deadline == 0) return -1;
    int64_t left = deadline - now_ns();
    if (left <= 0) return 0;
    int64_t ms = (left + 999999) / 1000000; /* round up: never wake early */
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* Waits until fd is ready for events. 0: ready; 1: deadline passed;
 * -1: poll failed (errno set). */
static int wait_ready(int fd, short events, int64_t deadline) {
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = events, .revents = 0 };
        int timeout = poll_timeout(deadline);
        if (deadline != 0 && timeout == 0) return 1;
        int n = poll(&pfd, 1, timeout);
        if (n > 0) return 0; /* POLLHUP/POLLERR: the next recv/send reports it */
        if (n == 0) continue; /* re-check the clock; poll may round down */
        if (errno == EINTR) continue;
        return -1;
    }
}

/* ------------------------------------------------------------ connect */

int creditd_connect(const char *socket_path, int timeout_ms,
                    creditd_client **out, creditd_error *err) {
    clear_error(err);
    if (out == NULL) return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0, "out is NULL");
    *out = NULL;
    if (socket_path == NULL) {
        return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0, "socket_path is NULL");
    }
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    size_t path_length = strlen(socket_path);
    if (path_length == 0 || path_length >= sizeof address.sun_path) {
        return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0,
                    "socket path must be 1 to %zu bytes long", sizeof address.sun_path - 1);
    }
    memcpy(address.sun_path, socket_path, path_length);

    int64_t deadline = deadline_after(timeout_ms);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        int e = errno;
        return fail(err, CREDITD_ERR_CONNECT, e, "socket: %s", strerror(e));
    }
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
    {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
    }
#endif
    for (;;) {
        if (connect(fd, (const struct sockaddr *)&address, sizeof address) == 0) break;
        int e = errno;
        if (e == EISCONN) break;
        if (e == EINTR) continue;
        if (e == EAGAIN) {
            /* A Unix socket whose backlog is full refuses a non-blocking
             * connect with EAGAIN and does not queue it: retry until the
             * deadline. */
            int timeout = poll_timeout(deadline);
            if (deadline != 0 && timeout == 0) {
                close(fd);
                return fail(err, CREDITD_ERR_TIMEOUT, 0,
                            "connect to %s timed out (backlog full)", socket_path);
            }
            poll(NULL, 0, timeout < 0 || timeout > 10 ? 10 : timeout);
            continue;
        }
        if (e == EINPROGRESS || e == EALREADY) {
            int w = wait_ready(fd, POLLOUT, deadline);
            if (w == 1) {
                close(fd);
                return fail(err, CREDITD_ERR_TIMEOUT, 0, "connect to %s timed out", socket_path);
            }
            int so_error = 0;
            socklen_t len = sizeof so_error;
            if (w < 0) so_error = errno;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
            if (so_error == 0) break;
            e = so_error;
        }
        close(fd);
        return fail(err, CREDITD_ERR_CONNECT, e, "connect to %s: %s", socket_path, strerror(e));
    }

    creditd_client *client = calloc(1, sizeof *client);
    if (client == NULL) {
        close(fd);
        return fail(err, CREDITD_ERR_NO_MEMORY, ENOMEM, "out of memory");
    }
    client->fd = fd;
    client->usable = 1;
    client->next_stream_id = 1;
    *out = client;
    return CREDITD_OK;
}

void creditd_close(creditd_client *client) {
    if (client == NULL) return;
    if (client->fd >= 0) close(client->fd);
    free(client->body);
    free(client);
}

int creditd_is_usable(const creditd_client *client) {
    return client != NULL && client->usable;
}

/* Marks the connection unusable and reports why. */
static int break_connection(creditd_client *client, creditd_error *err,
                            creditd_error_kind kind, int sys_errno,
                            const char *what) {
    client->usable = 0;
    free(client->body);
    client->body = NULL;
    if (client->fd >= 0) {
        close(client->fd);
        client->fd = -1;
    }
    if (sys_errno != 0) return fail(err, kind, sys_errno, "%s: %s", what, strerror(sys_errno));
    return fail(err, kind, 0, "%s", what);
}

/* ------------------------------------------------------------ frames */

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Sends all of buf before the deadline. A frame cut short breaks the
 * framing for good, so any failure after the first byte breaks the
 * connection; a timeout before it leaves the connection as it was. */
static int send_all(creditd_client *client, const uint8_t *buf, size_t length,
                    int64_t deadline, creditd_error *err) {
    size_t sent = 0;
    while (sent < length) {
        ssize_t n = send(client->fd, buf + sent, length - sent, SEND_FLAGS);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        int e = n < 0 ? errno : EPIPE;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK) {
            int w = wait_ready(client->fd, POLLOUT, deadline);
            if (w == 0) continue;
            if (w == 1) {
                if (sent == 0) return fail(err, CREDITD_ERR_TIMEOUT, 0, "timed out sending the request");
                return break_connection(client, err, CREDITD_ERR_TIMEOUT, 0,
                                        "timed out in the middle of sending the request");
            }
            e = errno;
        }
        if (e == EPIPE || e == ECONNRESET) {
            return break_connection(client, err, CREDITD_ERR_CLOSED, e,
                                    "the server closed the connection");
        }
        return break_connection(client, err, CREDITD_ERR_IO, e, "send");
    }
    return CREDITD_OK;
}

/* Reads up to want bytes. Returns CREDITD_OK with *got > 0, or an error. */
static int recv_some(creditd_client *client, uint8_t *buf, size_t want, size_t *got,
                     int64_t deadline, int mid_frame, creditd_error *err) {
    for (;;) {
        ssize_t n = recv(client->fd, buf, want, 0);
        if (n > 0) {
            *got = (size_t)n;
            return CREDITD_OK;
        }
        if (n == 0) {
            return break_connection(client, err, CREDITD_ERR_CLOSED, 0,
                                    mid_frame ? "the server closed the connection in the middle of a frame"
                                              : "the server closed the connection");
        }
        int e = errno;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK) {
            int w = wait_ready(client->fd, POLLIN, deadline);
            if (w == 0) continue;
            if (w == 1) return fail(err, CREDITD_ERR_TIMEOUT, 0, "timed out waiting for the response");
            e = errno;
        }
        if (e == ECONNRESET) {
            return break_connection(client, err, CREDITD_ERR_CLOSED, e,
                                    "the server closed the connection");
        }
        return break_connection(client, err, CREDITD_ERR_IO, e, "recv");
    }
}

/*
 * Reads frames until the Response for stream_id is complete. On success
 * *body (malloc'ed, may be NULL for length 0) and *length belong to the
 * caller. Frames of other streams and of other types are read and dropped
 * without buffering them.
 */
static int read_response_frame(creditd_client *client, uint32_t stream_id,
                               int64_t deadline, uint8_t **body, size_t *length,
                               creditd_error *err) {
    uint8_t scratch[16384];
    for (;;) {
        if (client->header_have < HEADER_LENGTH) {
            size_t got = 0;
            int rc = recv_some(client, client->header + client->header_have,
                               HEADER_LENGTH - client->header_have, &got, deadline,
                               client->header_have > 0, err);
            if (rc != CREDITD_OK) return rc;
            client->header_have += got;
            if (client->header_have < HEADER_LENGTH) continue;

            client->frame_length = get_be32(client->header);
            client->frame_stream_id = get_be32(client->header + 4);
            client->frame_type = client->header[8];
            client->body_have = 0;
            if (client->frame_length > CREDITD_MAX_FRAME_LENGTH) {
                char what[128];
                snprintf(what, sizeof what,
                         "the server sent a frame of %u bytes, over the %u byte limit",
                         (unsigned)client->frame_length, CREDITD_MAX_FRAME_LENGTH);
                return break_connection(client, err, CREDITD_ERR_PROTOCOL, 0, what);
            }
            if (client->frame_type == TYPE_RESPONSE && client->frame_stream_id == stream_id &&
                client->frame_length > 0) {
                client->body = malloc(client->frame_length);
                if (client->body == NULL) {
                    /* The frame is already half-consumed: the stream cannot resync. */
                    return break_connection(client, err, CREDITD_ERR_NO_MEMORY, ENOMEM,
                                            "out of memory for the response");
                }
            }
        }

        while (client->body_have < client->frame_length) {
            size_t want = client->frame_length - client->body_have;
            uint8_t *into = scratch;
            if (client->body != NULL) into = client->body + client->body_have;
            else if (want > sizeof scratch) want = sizeof scratch;
            size_t got = 0;
            int rc = recv_some(client, into, want, &got, deadline, 1, err);
            if (rc != CREDITD_OK) return rc;
            client->body_have += got;
        }

        /* A whole frame is in. */
        uint8_t *frame_body = client->body;
        size_t frame_length = client->frame_length;
        int wanted = client->frame_type == TYPE_RESPONSE && client->frame_stream_id == stream_id;
        client->body = NULL;
        client->header_have = 0;
        client->body_have = 0;
        if (wanted) {
            *body = frame_body;
            *length = frame_length;
            return CREDITD_OK;
        }
        /* A reply for a call that gave up, or a type a unary call does not use. */
        free(frame_body);
    }
}

/* ------------------------------------------------------------ calls */

/* Sends a Request and returns the decoded Response envelope. */
static int round_trip(creditd_client *client, const char *service, const char *method,
                      const uint8_t *payload, size_t payload_length, int timeout_ms,
                      Ttrpc__Response **response, creditd_error *err) {
    *response = NULL;
    if (client == NULL) return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0, "client is NULL");
    if (service == NULL || method == NULL) {
        return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0, "service and method are required");
    }
    if (payload == NULL && payload_length > 0) {
        return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0, "request bytes are NULL");
    }
    if (!client->usable) {
        return fail(err, CREDITD_ERR_CLOSED, 0, "the connection is unusable after an earlier error");
    }
    if (client->next_stream_id > LAST_STREAM_ID) {
        return break_connection(client, err, CREDITD_ERR_CLOSED, 0,
                                "stream ids are exhausted; open a new connection");
    }
    int64_t deadline = deadline_after(timeout_ms);

    Ttrpc__Request request;
    ttrpc__request__init(&request);
    /* protobuf-c fields are not const, but pack only reads them. */
    request.service = (char *)service;
    request.method = (char *)method;
    request.payload.data = (uint8_t *)payload;
    request.payload.len = payload_length;
    if (deadline != 0) {
        /* The server gets the time left, which is what it has to answer. */
        int64_t left = deadline - now_ns();
        request.timeout_nano = left > 0 ? left : 1;
    }
    size_t envelope_length = ttrpc__request__get_packed_size(&request);
    if (envelope_length > CREDITD_MAX_FRAME_LENGTH) {
        return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0,
                    "the request needs %zu bytes, over the %u byte frame limit",
                    envelope_length, CREDITD_MAX_FRAME_LENGTH);
    }
    uint8_t *frame = malloc(HEADER_LENGTH + envelope_length);
    if (frame == NULL) return fail(err, CREDITD_ERR_NO_MEMORY, ENOMEM, "out of memory");

    uint32_t stream_id = (uint32_t)client->next_stream_id;
    client->next_stream_id += 2;
    put_be32(frame, (uint32_t)envelope_length);
    put_be32(frame + 4, stream_id);
    frame[8] = TYPE_REQUEST;
    frame[9] = 0; /* unary */
    ttrpc__request__pack(&request, frame + HEADER_LENGTH);

    int rc = send_all(client, frame, HEADER_LENGTH + envelope_length, deadline, err);
    free(frame);
    if (rc != CREDITD_OK) return rc;

    uint8_t *body = NULL;
    size_t body_length = 0;
    rc = read_response_frame(client, stream_id, deadline, &body, &body_length, err);
    if (rc != CREDITD_OK) return rc;

    Ttrpc__Response *decoded = ttrpc__response__unpack(NULL, body_length, body);
    free(body);
    if (decoded == NULL) {
        return fail(err, CREDITD_ERR_PROTOCOL, 0,
                    "the response envelope of %s/%s is not a valid ttrpc.Response", service, method);
    }
    if (decoded->status != NULL && decoded->status->code != 0) {
        rc = fail_with_status(err, decoded->status);
        ttrpc__response__free_unpacked(decoded, NULL);
        return rc;
    }
    *response = decoded;
    return CREDITD_OK;
}

int creditd_call_bytes(creditd_client *client, const char *service, const char *method,
                       const uint8_t *req, size_t req_len, uint8_t **resp, size_t *resp_len,
                       int timeout_ms, creditd_error *err) {
    clear_error(err);
    if (resp == NULL || resp_len == NULL) {
        return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0, "resp and resp_len are required");
    }
    *resp = NULL;
    *resp_len = 0;
    Ttrpc__Response *response = NULL;
    int rc = round_trip(client, service, method, req, req_len, timeout_ms, &response, err);
    if (rc != CREDITD_OK) return rc;
    if (response->payload.len > 0) {
        *resp = malloc(response->payload.len);
        if (*resp == NULL) {
            ttrpc__response__free_unpacked(response, NULL);
            return fail(err, CREDITD_ERR_NO_MEMORY, ENOMEM, "out of memory");
        }
        memcpy(*resp, response->payload.data, response->payload.len);
        *resp_len = response->payload.len;
    }
    ttrpc__response__free_unpacked(response, NULL);
    return CREDITD_OK;
}

int creditd_call(creditd_client *client, const char *service, const char *method,
                 const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                 ProtobufCMessage **resp, int timeout_ms, creditd_error *err) {
    clear_error(err);
    if (resp == NULL) return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0, "resp is NULL");
    *resp = NULL;
    if (req == NULL || resp_desc == NULL || req->descriptor == NULL ||
        req->descriptor->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC ||
        resp_desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC) {
        return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0,
                    "req and resp_desc must be an initialised message and its descriptor");
    }
    size_t req_length = protobuf_c_message_get_packed_size(req);
    if (req_length > CREDITD_MAX_FRAME_LENGTH) {
        return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0,
                    "the request needs %zu bytes, over the %u byte frame limit",
                    req_length, CREDITD_MAX_FRAME_LENGTH);
    }
    uint8_t *req_bytes = NULL;
    if (req_length > 0) {
        req_bytes = malloc(req_length);
        if (req_bytes == NULL) return fail(err, CREDITD_ERR_NO_MEMORY, ENOMEM, "out of memory");
        protobuf_c_message_pack(req, req_bytes);
    }
    Ttrpc__Response *response = NULL;
    int rc = round_trip(client, service, method, req_bytes, req_length, timeout_ms, &response, err);
    free(req_bytes);
    if (rc != CREDITD_OK) return rc;

    ProtobufCMessage *decoded = protobuf_c_message_unpack(resp_desc, NULL, response->payload.len,
                                                          response->payload.data);
    ttrpc__response__free_unpacked(response, NULL);
    if (decoded == NULL) {
        return fail(err, CREDITD_ERR_PROTOCOL, 0, "the response of %s/%s is not a valid %s",
                    service, method, resp_desc->name);
    }
    *resp = decoded;
    return CREDITD_OK;
}

void creditd_message_free(void *message) {
    if (message != NULL) protobuf_c_message_free_unpacked((ProtobufCMessage *)message, NULL);
}

void creditd_bytes_free(uint8_t *bytes) {
    free(bytes);
}

/* ------------------------------------------------------------ per method */

/* Each wrapper checks the request's type, so a mismatched struct is a clean
 * error rather than a garbled call. */
#define CREDITD_METHOD(fn, service, method, ReqType, req_desc, RespType, resp_desc)   \
    int fn(creditd_client *client, const ReqType *req, RespType **resp, int timeout_ms, \
           creditd_error *err) {                                                       \
        clear_error(err);                                                              \
        if (resp == NULL) return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0, "resp is NULL"); \
        *resp = NULL;                                                                  \
        if (req == NULL || req->base.descriptor != &req_desc) {                        \
            return fail(err, CREDITD_ERR_INVALID_ARGUMENT, 0,                          \
                        "req must be an initialised %s", req_desc.name);               \
        }                                                                              \
        ProtobufCMessage *message = NULL;                                              \
        int rc = creditd_call(client, service, method, &req->base, &resp_desc, &message, \
                              timeout_ms, err);                                        \
        *resp = (RespType *)message;                                                   \
        return rc;                                                                     \
    }

#define CREDITS_METHOD(fn, method, Name, name)                                            \
    CREDITD_METHOD(fn, "creditd.v1.Credits", method, Creditd__V1__##Name##Request,        \
                   creditd__v1__##name##_request__descriptor, Creditd__V1__##Name##Response, \
                   creditd__v1__##name##_response__descriptor)
#define ADMIN_METHOD(fn, method, Name, name)                                              \
    CREDITD_METHOD(fn, "creditd.v1.Admin", method, Creditd__V1__##Name##Request,          \
                   creditd__v1__##name##_request__descriptor, Creditd__V1__##Name##Response, \
                   creditd__v1__##name##_response__descriptor)

CREDITS_METHOD(creditd_create_subscription, "CreateSubscription", CreateSubscription, create_subscription)
CREDITS_METHOD(creditd_get_subscription, "GetSubscription", GetSubscription, get_subscription)
CREDITS_METHOD(creditd_list_subscriptions, "ListSubscriptions", ListSubscriptions, list_subscriptions)
CREDITS_METHOD(creditd_cancel_subscription, "CancelSubscription", CancelSubscription, cancel_subscription)
CREDITS_METHOD(creditd_resume_subscription, "ResumeSubscription", ResumeSubscription, resume_subscription)
CREDITS_METHOD(creditd_change_seats, "ChangeSeats", ChangeSeats, change_seats)
CREDITS_METHOD(creditd_get_refund_status, "GetRefundStatus", GetRefundStatus, get_refund_status)
CREDITS_METHOD(creditd_list_invoices, "ListInvoices", ListInvoices, list_invoices)
CREDITS_METHOD(creditd_record_refund_outcome, "RecordRefundOutcome", RecordRefundOutcome, record_refund_outcome)
CREDITS_METHOD(creditd_import_subscription, "ImportSubscription", ImportSubscription, import_subscription)
CREDITS_METHOD(creditd_list_credits, "ListCredits", ListCredits, list_credits)
CREDITS_METHOD(creditd_list_events, "ListEvents", ListEvents, list_events)

ADMIN_METHOD(creditd_get_stats, "GetStats", GetStats, get_stats)
ADMIN_METHOD(creditd_take_snapshot, "TakeSnapshot", TakeSnapshot, take_snapshot)
ADMIN_METHOD(creditd_get_clock, "GetClock", GetClock, get_clock)
ADMIN_METHOD(creditd_advance_clock, "AdvanceClock", AdvanceClock, advance_clock)
ADMIN_METHOD(creditd_reload, "Reload", Reload, reload)
ADMIN_METHOD(creditd_get_metrics, "GetMetrics", GetMetrics, get_metrics)

CREDITD_METHOD(creditd_health_check, "grpc.health.v1.Health", "Check",
               Grpc__Health__V1__HealthCheckRequest, grpc__health__v1__health_check_request__descriptor,
               Grpc__Health__V1__HealthCheckResponse, grpc__health__v1__health_check_response__descriptor)
