/*
 * Robustness tests for libcreditd-client: a fake ttrpc server on a real Unix
 * socket (a thread of this process) answers with well-formed, malformed,
 * truncated, oversized and stale frames, and every call must end with a
 * clean result.
 *
 * SIGPIPE keeps its default action on purpose: a write to a vanished server
 * that raised it would kill this program and fail the run.
 *
 * Usage: robustness [test-name ...]   (no names: run all)
 * Exit status 0 when every selected test passed.
 */
#define _GNU_SOURCE 1

#include "creditd_client.h"

#include "google/rpc/status.pb-c.h"
#include "ttrpc/request.pb-c.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_FRAME CREDITD_MAX_FRAME_LENGTH
#define REASON_URL "type.googleapis.com/creditd.v1.ErrorReason"
#define SHORT_TIMEOUT_MS 200
#define CALL_TIMEOUT_MS 5000

static int failures;
static const char *current_test;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "FAIL %s: %s:%d: %s\n", current_test, __FILE__, __LINE__, \
                    #cond);                                                          \
            failures++;                                                              \
        }                                                                            \
    } while (0)

#define CHECK_KIND(rc, err, want)                                                        \
    do {                                                                                 \
        if ((rc) != (want) || (err).kind != (want)) {                                    \
            fprintf(stderr, "FAIL %s: %s:%d: got %s (%s), want %s\n", current_test,       \
                    __FILE__, __LINE__, creditd_error_kind_name((creditd_error_kind)(rc)), \
                    (err).message, creditd_error_kind_name(want));                       \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

/* ------------------------------------------------------------ fake server */

struct fake_server;
typedef void (*server_script)(struct fake_server *server, int fd);

struct fake_server {
    char dir[64];
    char path[100];
    int listen_fd;
    pthread_t thread;
    server_script script;
    /* What the server saw, for the test to check after join. */
    uint32_t stream_ids[16];
    int64_t timeouts[16];
    uint8_t flags[16];
    int requests;
    int script_ok; /* the script's own checks */
};

static void write_all(int fd, const void *data, size_t length) {
    const uint8_t *p = data;
    while (length > 0) {
        ssize_t n = send(fd, p, length, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return; /* the client left; the test checks its side */
        p += n;
        length -= (size_t)n;
    }
}

static int read_exactly(int fd, uint8_t *buf, size_t length) {
    while (length > 0) {
        ssize_t n = recv(fd, buf, length, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        buf += n;
        length -= (size_t)n;
    }
    return 0;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void frame_header(uint8_t header[10], uint32_t length, uint32_t stream_id, uint8_t type,
                         uint8_t flags) {
    put_be32(header, length);
    put_be32(header + 4, stream_id);
    header[8] = type;
    header[9] = flags;
}

static void send_frame(int fd, uint32_t stream_id, uint8_t type, const void *body, size_t length) {
    uint8_t header[10];
    frame_header(header, (uint32_t)length, stream_id, type, 0);
    write_all(fd, header, sizeof header);
    if (length > 0) write_all(fd, body, length);
}

/* Reads one Request frame. Returns its decoded envelope (NULL on EOF or a
 * malformed request) and records id, flags and timeout. */
static Ttrpc__Request *read_request(struct fake_server *server, int fd, uint32_t *stream_id) {
    uint8_t header[10];
    if (read_exactly(fd, header, sizeof header) != 0) return NULL;
    uint32_t length = ((uint32_t)header[0] << 24) | ((uint32_t)header[1] << 16) |
                      ((uint32_t)header[2] << 8) | header[3];
    uint32_t id = ((uint32_t)header[4] << 24) | ((uint32_t)header[5] << 16) |
                  ((uint32_t)header[6] << 8) | header[7];
    if (length > MAX_FRAME || header[8] != 0x01) {
        server->script_ok = 0;
        return NULL;
    }
    uint8_t *body = malloc(length ? length : 1);
    if (body == NULL || read_exactly(fd, body, length) != 0) {
        free(body);
        return NULL;
    }
    Ttrpc__Request *request = ttrpc__request__unpack(NULL, length, body);
    free(body);
    if (request == NULL) {
        server->script_ok = 0;
        return NULL;
    }
    if (server->requests < 16) {
        server->stream_ids[server->requests] = id;
        server->timeouts[server->requests] = request->timeout_nano;
        server->flags[server->requests] = header[9];
    }
    server->requests++;
    *stream_id = id;
    return request;
}

/* Reads a request and forgets it; returns its stream id or 0 on EOF. */
static uint32_t next_request(struct fake_server *server, int fd) {
    uint32_t id = 0;
    Ttrpc__Request *request = read_request(server, fd, &id);
    if (request == NULL) return 0;
    ttrpc__request__free_unpacked(request, NULL);
    return id;
}

/* A Response envelope as bytes: status may be NULL (success). */
static uint8_t *encode_response(const Google__Rpc__Status *status, const uint8_t *payload,
                                size_t payload_length, size_t *length) {
    Ttrpc__Response response;
    ttrpc__response__init(&response);
    response.status = (Google__Rpc__Status *)status;
    response.payload.data = (uint8_t *)payload;
    response.payload.len = payload_length;
    *length = ttrpc__response__get_packed_size(&response);
    uint8_t *bytes = malloc(*length ? *length : 1);
    if (bytes != NULL) ttrpc__response__pack(&response, bytes);
    return bytes;
}

static void send_response(int fd, uint32_t stream_id, const Google__Rpc__Status *status,
                          const uint8_t *payload, size_t payload_length) {
    size_t length = 0;
    uint8_t *bytes = encode_response(status, payload, payload_length, &length);
    if (bytes == NULL) return;
    send_frame(fd, stream_id, 0x02, bytes, length);
    free(bytes);
}

/* HealthCheckResponse{status} as bytes (SERVING = 1 -> 08 01). */
static void send_health(int fd, uint32_t stream_id, int serving_status) {
    uint8_t payload[2] = { 0x08, (uint8_t)serving_status };
    send_response(fd, stream_id, NULL, payload, serving_status == 0 ? 0 : 2);
}

/* Keeps the connection open until the client closes it. */
static void wait_for_close(int fd) {
    uint8_t sink[4096];
    for (;;) {
        ssize_t n = recv(fd, sink, sizeof sink, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
    }
}

static void *server_main(void *arg) {
    struct fake_server *server = arg;
    int fd = accept(server->listen_fd, NULL, NULL);
    if (fd >= 0) {
        server->script(server, fd);
        close(fd);
    }
    return NULL;
}

static int start_server(struct fake_server *server, server_script script) {
    memset(server, 0, sizeof *server);
    server->script = script;
    server->script_ok = 1;
    const char *tmp = getenv("TMPDIR");
    snprintf(server->dir, sizeof server->dir, "%s/creditd-client-test.XXXXXX",
             tmp != NULL && strlen(tmp) < 30 ? tmp : "/tmp");
    if (mkdtemp(server->dir) == NULL) return -1;
    snprintf(server->path, sizeof server->path, "%s/s.sock", server->dir);
    server->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    snprintf(address.sun_path, sizeof address.sun_path, "%s", server->path);
    if (server->listen_fd < 0 ||
        bind(server->listen_fd, (struct sockaddr *)&address, sizeof address) != 0 ||
        listen(server->listen_fd, 4) != 0) {
        return -1;
    }
    return pthread_create(&server->thread, NULL, server_main, server) == 0 ? 0 : -1;
}

static void stop_server(struct fake_server *server) {
    pthread_join(server->thread, NULL);
    close(server->listen_fd);
    unlink(server->path);
    rmdir(server->dir);
    CHECK(server->script_ok);
}

/* Starts a server and connects a client to it. */
static creditd_client *connect_fake(struct fake_server *server, server_script script) {
    creditd_client *client = NULL;
    creditd_error err;
    if (start_server(server, script) != 0) {
        fprintf(stderr, "FAIL %s: cannot start the fake server: %s\n", current_test,
                strerror(errno));
        failures++;
        exit(2);
    }
    int rc = creditd_connect(server->path, CALL_TIMEOUT_MS, &client, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    if (client == NULL) exit(2);
    return client;
}

static int health(creditd_client *client, int timeout_ms, int *serving_status, creditd_error *err) {
    Grpc__Health__V1__HealthCheckRequest request;
    grpc__health__v1__health_check_request__init(&request);
    request.service = "creditd.v1.Credits";
    Grpc__Health__V1__HealthCheckResponse *response = NULL;
    int rc = creditd_health_check(client, &request, &response, timeout_ms, err);
    if (rc == CREDITD_OK) {
        if (response == NULL) return -1;
        *serving_status = response->status;
        grpc__health__v1__health_check_response__free_unpacked(response, NULL);
    } else if (response != NULL) {
        return -1; /* a failed call must not hand out a response */
    }
    return rc;
}

/* ------------------------------------------------------------ scripts */

static void script_ok(struct fake_server *server, int fd) {
    uint32_t id = 0;
    Ttrpc__Request *request = read_request(server, fd, &id);
    if (request == NULL) return;
    Grpc__Health__V1__HealthCheckRequest *payload = grpc__health__v1__health_check_request__unpack(
        NULL, request->payload.len, request->payload.data);
    if (strcmp(request->service, "grpc.health.v1.Health") != 0 ||
        strcmp(request->method, "Check") != 0 || request->n_metadata != 0 || payload == NULL ||
        strcmp(payload->service, "creditd.v1.Credits") != 0) {
        server->script_ok = 0;
    }
    if (payload != NULL) grpc__health__v1__health_check_request__free_unpacked(payload, NULL);
    ttrpc__request__free_unpacked(request, NULL);
    send_health(fd, id, 1);
    wait_for_close(fd);
}

static void test_ok(void) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script_ok);
    creditd_error err;
    int status = -1;
    int rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    CHECK(status == 1);
    CHECK(err.code == 0 && err.message[0] == '\0');
    creditd_close(client);
    stop_server(&server);
    CHECK(server.requests == 1);
    CHECK(server.stream_ids[0] == 1);
    CHECK(server.flags[0] == 0);
    CHECK(server.timeouts[0] > 0 && server.timeouts[0] <= (int64_t)CALL_TIMEOUT_MS * 1000000);
}

/* Ids 1, 3, 5; status code 0 and an empty payload both mean OK. */
static void script_three_calls(struct fake_server *server, int fd) {
    uint32_t id;
    if ((id = next_request(server, fd)) == 0) return;
    send_health(fd, id, 1);
    if ((id = next_request(server, fd)) == 0) return;
    Google__Rpc__Status ok_status;
    google__rpc__status__init(&ok_status);
    uint8_t payload[2] = { 0x08, 0x02 };
    send_response(fd, id, &ok_status, payload, sizeof payload);
    if ((id = next_request(server, fd)) == 0) return;
    send_frame(fd, id, 0x02, NULL, 0); /* Response{}: OK, empty payload */
    wait_for_close(fd);
}

static void test_stream_ids_and_ok_forms(void) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script_three_calls);
    creditd_error err;
    int status = -1;
    int rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    CHECK(status == 1);
    rc = health(client, 0, &status, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    CHECK(status == 2);
    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    CHECK(status == 0);
    creditd_close(client);
    stop_server(&server);
    CHECK(server.requests == 3);
    CHECK(server.stream_ids[0] == 1 && server.stream_ids[1] == 3 && server.stream_ids[2] == 5);
    CHECK(server.timeouts[1] == 0); /* no deadline */
}

/* The response dribbles out one byte per write. */
static void script_short_writes(struct fake_server *server, int fd) {
    uint32_t id = next_request(server, fd);
    if (id == 0) return;
    uint8_t frame[14];
    frame_header(frame, 4, id, 0x02, 0);
    frame[10] = 0x12;
    frame[11] = 0x02;
    frame[12] = 0x08;
    frame[13] = 0x01;
    for (size_t i = 0; i < sizeof frame; i++) {
        write_all(fd, frame + i, 1);
        usleep(2000);
    }
    wait_for_close(fd);
}

static void test_short_reads(void) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script_short_writes);
    creditd_error err;
    int status = -1;
    int rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    CHECK(status == 1);
    creditd_close(client);
    stop_server(&server);
}

/* Frames the call must skip: other streams, even ids, Data and unknown types. */
static void script_noise_then_reply(struct fake_server *server, int fd) {
    uint32_t id = next_request(server, fd);
    if (id == 0) return;
    uint8_t junk[300];
    memset(junk, 0xAB, sizeof junk);
    send_frame(fd, 7777, 0x02, junk, sizeof junk);       /* never issued */
    send_frame(fd, id + 1, 0x02, junk, 10);              /* even id */
    send_frame(fd, id, 0x03, junk, sizeof junk);         /* Data on our stream */
    send_frame(fd, id, 0x7F, junk, 17);                  /* unknown type */
    send_frame(fd, id, 0x00, NULL, 0);                   /* empty, type 0 */
    send_health(fd, 7779, 2);                            /* a valid reply, wrong id */
    send_health(fd, id, 1);
    wait_for_close(fd);
}

static void test_skips_other_frames(void) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script_noise_then_reply);
    creditd_error err;
    int status = -1;
    int rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    CHECK(status == 1);
    creditd_close(client);
    stop_server(&server);
}

/* Only a reply on a stream that was never opened: the call times out, and
 * the connection still works. */
static void script_wrong_id(struct fake_server *server, int fd) {
    uint32_t id = next_request(server, fd);
    if (id == 0) return;
    send_health(fd, id + 7776, 1);
    if ((id = next_request(server, fd)) == 0) return;
    send_health(fd, id, 2);
    wait_for_close(fd);
}

static void test_wrong_stream_id(void) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script_wrong_id);
    creditd_error err;
    int status = -1;
    int rc = health(client, SHORT_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_TIMEOUT);
    CHECK(err.code == CREDITD_CODE_DEADLINE_EXCEEDED);
    CHECK(creditd_is_usable(client));
    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    CHECK(status == 2);
    creditd_close(client);
    stop_server(&server);
}

/* The late reply to a timed-out call arrives before the next call's reply,
 * the first half of it even before the timeout. */
static void script_late_reply(struct fake_server *server, int fd) {
    uint32_t first = next_request(server, fd);
    if (first == 0) return;
    size_t length = 0;
    uint8_t payload[2] = { 0x08, 0x01 };
    uint8_t *envelope = encode_response(NULL, payload, sizeof payload, &length);
    uint8_t header[10];
    frame_header(header, (uint32_t)length, first, 0x02, 0);
    write_all(fd, header, 6); /* stops inside the header */
    uint32_t second = next_request(server, fd); /* sent once the first call gave up */
    if (second == 0) {
        free(envelope);
        return;
    }
    write_all(fd, header + 6, 4);
    write_all(fd, envelope, length);
    free(envelope);
    send_health(fd, second, 2);
    wait_for_close(fd);
}

static void test_late_reply_is_dropped(void) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script_late_reply);
    creditd_error err;
    int status = -1;
    int rc = health(client, SHORT_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_TIMEOUT);
    CHECK(creditd_is_usable(client));
    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    CHECK(status == 2); /* not the stale SERVING */
    creditd_close(client);
    stop_server(&server);
    CHECK(server.stream_ids[1] == 3);
}

/* A frame body that stops half-way and then waits: timeout, not a hang. */
static void script_stall_mid_body(struct fake_server *server, int fd) {
    uint32_t id = next_request(server, fd);
    if (id == 0) return;
    uint8_t header[10];
    uint8_t part[20] = { 0 };
    frame_header(header, 100, id, 0x02, 0);
    write_all(fd, header, sizeof header);
    write_all(fd, part, sizeof part);
    wait_for_close(fd);
}

static void test_stall_mid_body_times_out(void) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script_stall_mid_body);
    creditd_error err;
    int status = -1;
    int rc = health(client, SHORT_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_TIMEOUT);
    creditd_close(client);
    stop_server(&server);
}

static void script_truncated_header(struct fake_server *server, int fd) {
    if (next_request(server, fd) == 0) return;
    uint8_t header[5] = { 0, 0, 0, 4, 0 };
    write_all(fd, header, sizeof header);
}

static void script_truncated_body(struct fake_server *server, int fd) {
    uint32_t id = next_request(server, fd);
    if (id == 0) return;
    uint8_t header[10];
    uint8_t part[20] = { 0x12, 0x40 };
    frame_header(header, 100, id, 0x02, 0);
    write_all(fd, header, sizeof header);
    write_all(fd, part, sizeof part);
}

static void script_close_without_reply(struct fake_server *server, int fd) {
    next_request(server, fd);
}

/* The server goes away before the answer is complete: CLOSED, and the
 * connection refuses further calls. */
static void expect_closed(server_script script) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script);
    creditd_error err;
    int status = -1;
    int rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_CLOSED);
    CHECK(err.code == CREDITD_CODE_UNAVAILABLE);
    CHECK(!creditd_is_usable(client));
    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_CLOSED);
    creditd_close(client);
    stop_server(&server);
}

static void test_truncated_header(void) { expect_closed(script_truncated_header); }
static void test_truncated_body(void) { expect_closed(script_truncated_body); }
static void test_close_without_reply(void) { expect_closed(script_close_without_reply); }

static void send_header_only(struct fake_server *server, int fd, uint32_t length) {
    uint32_t id = next_request(server, fd);
    if (id == 0) return;
    uint8_t header[10];
    frame_header(header, length, id, 0x02, 0);
    write_all(fd, header, sizeof header);
    uint8_t some[64] = { 0 };
    write_all(fd, some, sizeof some);
    wait_for_close(fd);
}

static void script_oversize_max(struct fake_server *server, int fd) {
    send_header_only(server, fd, 0xFFFFFFFFu);
}

static void script_oversize_by_one(struct fake_server *server, int fd) {
    send_header_only(server, fd, MAX_FRAME + 1);
}

/* An oversized stale frame is as fatal as one on our stream: the length
 * cannot be trusted. */
static void script_oversize_other_stream(struct fake_server *server, int fd) {
    uint32_t id = next_request(server, fd);
    if (id == 0) return;
    uint8_t header[10];
    frame_header(header, MAX_FRAME + 1, 7777, 0x02, 0);
    write_all(fd, header, sizeof header);
    wait_for_close(fd);
}

static void script_garbage(struct fake_server *server, int fd) {
    if (next_request(server, fd) == 0) return;
    const char *garbage = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    write_all(fd, garbage, strlen(garbage));
    wait_for_close(fd);
}

static void expect_protocol_error_and_unusable(server_script script) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script);
    creditd_error err;
    int status = -1;
    int rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_PROTOCOL);
    CHECK(err.code == CREDITD_CODE_INTERNAL);
    CHECK(!creditd_is_usable(client));
    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_CLOSED);
    creditd_close(client);
    stop_server(&server);
}

static void test_oversize_ffffffff(void) { expect_protocol_error_and_unusable(script_oversize_max); }
static void test_oversize_limit_plus_one(void) { expect_protocol_error_and_unusable(script_oversize_by_one); }
static void test_oversize_other_stream(void) { expect_protocol_error_and_unusable(script_oversize_other_stream); }
static void test_garbage(void) { expect_protocol_error_and_unusable(script_garbage); }

/* A frame of exactly 4 MiB is valid: GetMetricsResponse{prometheus_text}. */
static void script_exactly_limit(struct fake_server *server, int fd) {
    uint32_t id = next_request(server, fd);
    if (id == 0) return;
    /* Response{payload: GetMetricsResponse{prometheus_text: "aaa..."}} with
     * 1 + 4 bytes of tag and length around each: 4194304 in all. */
    size_t text_length = MAX_FRAME - 10;
    size_t payload_length = 1 + 4 + text_length;
    uint8_t *frame = malloc(10 + MAX_FRAME);
    if (frame == NULL) return;
    frame_header(frame, MAX_FRAME, id, 0x02, 0);
    uint8_t *p = frame + 10;
    *p++ = 0x12;
    *p++ = (uint8_t)(0x80 | (payload_length & 0x7F));
    *p++ = (uint8_t)(0x80 | ((payload_length >> 7) & 0x7F));
    *p++ = (uint8_t)(0x80 | ((payload_length >> 14) & 0x7F));
    *p++ = (uint8_t)((payload_length >> 21) & 0x7F);
    *p++ = 0x0a;
    *p++ = (uint8_t)(0x80 | (text_length & 0x7F));
    *p++ = (uint8_t)(0x80 | ((text_length >> 7) & 0x7F));
    *p++ = (uint8_t)(0x80 | ((text_length >> 14) & 0x7F));
    *p++ = (uint8_t)((text_length >> 21) & 0x7F);
    memset(p, 'a', text_length);
    if ((size_t)(p + text_length - frame) != 10 + MAX_FRAME) server->script_ok = 0;
    write_all(fd, frame, 10 + MAX_FRAME);
    free(frame);
    wait_for_close(fd);
}

static void test_exactly_limit(void) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script_exactly_limit);
    creditd_error err;
    Creditd__V1__GetMetricsRequest request;
    creditd__v1__get_metrics_request__init(&request);
    Creditd__V1__GetMetricsResponse *response = NULL;
    int rc = creditd_get_metrics(client, &request, &response, CALL_TIMEOUT_MS, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    CHECK(response != NULL && strlen(response->prometheus_text) == MAX_FRAME - 10);
    creditd_message_free(response);
    creditd_close(client);
    stop_server(&server);
}

/* Sound frames with unreadable contents: PROTOCOL, and the connection
 * carries the next call. */
static void script_bad_envelope(struct fake_server *server, int fd) {
    uint32_t id = next_request(server, fd);
    if (id == 0) return;
    uint8_t bad[6] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
    send_frame(fd, id, 0x02, bad, sizeof bad);
    if ((id = next_request(server, fd)) == 0) return;
    uint8_t truncated_status[4] = { 0x0a, 0x10, 0x08, 0x05 }; /* status claims 16 bytes */
    send_frame(fd, id, 0x02, truncated_status, sizeof truncated_status);
    if ((id = next_request(server, fd)) == 0) return;
    uint8_t bad_payload[3] = { 0x0a, 0x05, 'a' }; /* string field claims 5 bytes */
    send_response(fd, id, NULL, bad_payload, sizeof bad_payload);
    if ((id = next_request(server, fd)) == 0) return;
    send_health(fd, id, 1);
    wait_for_close(fd);
}

static void test_undecodable_contents(void) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script_bad_envelope);
    creditd_error err;
    int status = -1;
    for (int i = 0; i < 3; i++) {
        int rc = health(client, CALL_TIMEOUT_MS, &status, &err);
        CHECK_KIND(rc, err, CREDITD_ERR_PROTOCOL);
        CHECK(creditd_is_usable(client));
    }
    int rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    CHECK(status == 1);
    creditd_close(client);
    stop_server(&server);
}

/* Error statuses and where the reason comes from. */
static void send_error(int fd, uint32_t id, int code, const char *message,
                       const char *detail_url, const uint8_t *detail, size_t detail_length,
                       int with_decoy) {
    Google__Rpc__Status status;
    google__rpc__status__init(&status);
    status.code = code;
    status.message = (char *)message;
    Google__Protobuf__Any decoy, any;
    Google__Protobuf__Any *details[2];
    google__protobuf__any__init(&decoy);
    decoy.type_url = "type.googleapis.com/google.rpc.DebugInfo";
    decoy.value.data = (uint8_t *)"\x0a\x03xyz";
    decoy.value.len = 5;
    google__protobuf__any__init(&any);
    any.type_url = (char *)detail_url;
    any.value.data = (uint8_t *)detail;
    any.value.len = detail_length;
    size_t n = 0;
    if (with_decoy) details[n++] = &decoy;
    if (detail_url != NULL) details[n++] = &any;
    status.details = details;
    status.n_details = n;
    send_response(fd, id, &status, NULL, 0);
}

static uint8_t *encode_reason(const char *reason, size_t *length) {
    Creditd__V1__ErrorReason message;
    creditd__v1__error_reason__init(&message);
    message.reason = (char *)reason;
    Creditd__V1__ErrorReason__MetadataEntry entry;
    Creditd__V1__ErrorReason__MetadataEntry *entries[1] = { &entry };
    creditd__v1__error_reason__metadata_entry__init(&entry);
    entry.key = "subscription_id";
    entry.value = "sub-1";
    message.metadata = entries;
    message.n_metadata = 1;
    *length = creditd__v1__error_reason__get_packed_size(&message);
    uint8_t *bytes = malloc(*length);
    if (bytes != NULL) creditd__v1__error_reason__pack(&message, bytes);
    return bytes;
}

static void script_errors(struct fake_server *server, int fd) {
    uint32_t id;
    size_t length = 0;
    uint8_t *reason;
    char long_message[5000];
    /* 1: detail and matching prefix. */
    if ((id = next_request(server, fd)) == 0) return;
    reason = encode_reason("subscription_not_found", &length);
    send_error(fd, id, 5, "subscription_not_found: no subscription sub-1", REASON_URL, reason,
               length, 1);
    free(reason);
    /* 2: the detail wins over the prefix. */
    if ((id = next_request(server, fd)) == 0) return;
    reason = encode_reason("seats_must_be_positive", &length);
    send_error(fd, id, 3, "something_else: text", REASON_URL, reason, length, 0);
    free(reason);
    /* 3: no detail: the prefix. */
    if ((id = next_request(server, fd)) == 0) return;
    send_error(fd, id, 9, "cancel_pending: resume first", NULL, NULL, 0, 1);
    /* 4: an undecodable detail: the prefix. */
    if ((id = next_request(server, fd)) == 0) return;
    send_error(fd, id, 9, "idempotency_key_reused: different request", REASON_URL,
               (const uint8_t *)"\x0a\x7f", 2, 0);
    /* 5: protocol errors have no reason. */
    if ((id = next_request(server, fd)) == 0) return;
    send_error(fd, id, 12, "service creditd.v9.Nope", NULL, NULL, 0, 0);
    if ((id = next_request(server, fd)) == 0) return;
    send_error(fd, id, 3, "StreamID must be odd for client initiated streams", NULL, NULL, 0, 0);
    /* 7: an over-long message and reason are cut, not overflowed. */
    if ((id = next_request(server, fd)) == 0) return;
    memset(long_message, 'x', sizeof long_message - 1);
    long_message[sizeof long_message - 1] = '\0';
    memcpy(long_message, "aaaa", 4);
    for (size_t i = 4; i < 300; i++) long_message[i] = 'a';
    long_message[300] = ':';
    long_message[301] = ' ';
    send_error(fd, id, 13, long_message, NULL, NULL, 0, 0);
    /* 8: a status with code 0 is OK even with a message. */
    if ((id = next_request(server, fd)) == 0) return;
    send_error(fd, id, 0, "ignored", NULL, NULL, 0, 0);
    wait_for_close(fd);
}

static void test_error_statuses(void) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script_errors);
    creditd_error err;
    int status = -1;
    int rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_STATUS);
    CHECK(err.code == 5);
    CHECK(strcmp(err.reason, "subscription_not_found") == 0);
    CHECK(strcmp(err.message, "subscription_not_found: no subscription sub-1") == 0);
    CHECK(creditd_is_usable(client));

    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_STATUS);
    CHECK(err.code == 3);
    CHECK(strcmp(err.reason, "seats_must_be_positive") == 0);

    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_STATUS);
    CHECK(err.code == 9);
    CHECK(strcmp(err.reason, "cancel_pending") == 0);

    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_STATUS);
    CHECK(strcmp(err.reason, "idempotency_key_reused") == 0);

    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_STATUS);
    CHECK(err.code == 12 && err.reason[0] == '\0');
    CHECK(strcmp(err.message, "service creditd.v9.Nope") == 0);
    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_STATUS);
    CHECK(err.code == 3 && err.reason[0] == '\0');

    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_STATUS);
    CHECK(err.code == 13);
    CHECK(strlen(err.message) == sizeof err.message - 1);
    CHECK(strlen(err.reason) == sizeof err.reason - 1);

    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    CHECK(status == 0);
    creditd_close(client);
    stop_server(&server);
}

/* The server leaves while a large request is being written: an error, not
 * SIGPIPE. */
static void script_leave_at_once(struct fake_server *server, int fd) {
    (void)server;
    (void)fd;
}

static void test_no_sigpipe(void) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script_leave_at_once);
    pthread_join(server.thread, NULL); /* the server has closed its end */
    size_t length = 3 * 1024 * 1024;
    uint8_t *payload = calloc(1, length);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    creditd_error err;
    int rc = creditd_call_bytes(client, "creditd.v1.Credits", "CreateSubscription", payload,
                                length, &resp, &resp_len, CALL_TIMEOUT_MS, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_CLOSED);
    CHECK(resp == NULL && resp_len == 0);
    free(payload);
    creditd_close(client);
    close(server.listen_fd);
    unlink(server.path);
    rmdir(server.dir);
}

/* Local misuse is caught before anything is sent. */
static void script_one_ok_after_misuse(struct fake_server *server, int fd) {
    uint32_t id = next_request(server, fd);
    if (id == 0) return;
    send_health(fd, id, 1);
    wait_for_close(fd);
}

static void test_local_argument_errors(void) {
    struct fake_server server;
    creditd_client *client = connect_fake(&server, script_one_ok_after_misuse);
    creditd_error err;
    uint8_t *resp = NULL;
    size_t resp_len = 0;

    /* A request that cannot fit in a 4 MiB frame. */
    uint8_t *payload = calloc(1, MAX_FRAME);
    int rc = creditd_call_bytes(client, "creditd.v1.Credits", "CreateSubscription", payload,
                                MAX_FRAME, &resp, &resp_len, CALL_TIMEOUT_MS, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_INVALID_ARGUMENT);
    free(payload);

    /* A request struct of the wrong type. */
    Creditd__V1__GetStatsRequest stats;
    creditd__v1__get_stats_request__init(&stats);
    Grpc__Health__V1__HealthCheckResponse *health_response = NULL;
    rc = creditd_health_check(client, (const Grpc__Health__V1__HealthCheckRequest *)(void *)&stats,
                              &health_response, CALL_TIMEOUT_MS, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_INVALID_ARGUMENT);
    CHECK(health_response == NULL);
    rc = creditd_health_check(client, NULL, &health_response, CALL_TIMEOUT_MS, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_INVALID_ARGUMENT);
    rc = creditd_call(client, "x", "y", NULL, NULL, NULL, CALL_TIMEOUT_MS, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_INVALID_ARGUMENT);
    rc = creditd_call_bytes(NULL, "x", "y", NULL, 0, &resp, &resp_len, CALL_TIMEOUT_MS, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_INVALID_ARGUMENT);
    /* err may be NULL. */
    rc = creditd_call_bytes(client, NULL, "y", NULL, 0, &resp, &resp_len, CALL_TIMEOUT_MS, NULL);
    CHECK(rc == CREDITD_ERR_INVALID_ARGUMENT);

    /* None of that consumed the connection or a stream id's worth of bytes. */
    CHECK(creditd_is_usable(client));
    int status = -1;
    rc = health(client, CALL_TIMEOUT_MS, &status, &err);
    CHECK_KIND(rc, err, CREDITD_OK);
    CHECK(status == 1);
    creditd_close(client);
    creditd_close(NULL);
    stop_server(&server);
}

static void test_connect_errors(void) {
    creditd_client *client = (creditd_client *)(void *)&client;
    creditd_error err;
    int rc = creditd_connect("/nonexistent-dir/creditd.sock", 1000, &client, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_CONNECT);
    CHECK(err.sys_errno == ENOENT);
    CHECK(client == NULL);

    char long_path[200];
    memset(long_path, 'p', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    rc = creditd_connect(long_path, 1000, &client, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_INVALID_ARGUMENT);

    /* A socket that is bound but not listening refuses. */
    struct fake_server server;
    memset(&server, 0, sizeof server);
    snprintf(server.dir, sizeof server.dir, "/tmp/creditd-client-test.XXXXXX");
    CHECK(mkdtemp(server.dir) != NULL);
    snprintf(server.path, sizeof server.path, "%s/s.sock", server.dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    snprintf(address.sun_path, sizeof address.sun_path, "%s", server.path);
    CHECK(bind(fd, (struct sockaddr *)&address, sizeof address) == 0);
    rc = creditd_connect(server.path, 1000, &client, &err);
    CHECK_KIND(rc, err, CREDITD_ERR_CONNECT);
    CHECK(err.sys_errno == ECONNREFUSED);
    close(fd);
    unlink(server.path);
    rmdir(server.dir);
}

static void test_names(void) {
    CHECK(strcmp(creditd_code_name(5), "NOT_FOUND") == 0);
    CHECK(strcmp(creditd_code_name(17), "UNKNOWN_CODE") == 0);
    CHECK(strcmp(creditd_code_name(-1), "UNKNOWN_CODE") == 0);
    CHECK(strcmp(creditd_error_kind_name(CREDITD_ERR_TIMEOUT), "CREDITD_ERR_TIMEOUT") == 0);
}

/* ------------------------------------------------------------ main */

static const struct {
    const char *name;
    void (*run)(void);
} tests[] = {
    { "ok", test_ok },
    { "stream_ids_and_ok_forms", test_stream_ids_and_ok_forms },
    { "short_reads", test_short_reads },
    { "skips_other_frames", test_skips_other_frames },
    { "wrong_stream_id", test_wrong_stream_id },
    { "late_reply_is_dropped", test_late_reply_is_dropped },
    { "stall_mid_body_times_out", test_stall_mid_body_times_out },
    { "truncated_header", test_truncated_header },
    { "truncated_body", test_truncated_body },
    { "close_without_reply", test_close_without_reply },
    { "oversize_ffffffff", test_oversize_ffffffff },
    { "oversize_limit_plus_one", test_oversize_limit_plus_one },
    { "oversize_other_stream", test_oversize_other_stream },
    { "garbage", test_garbage },
    { "exactly_limit", test_exactly_limit },
    { "undecodable_contents", test_undecodable_contents },
    { "error_statuses", test_error_statuses },
    { "no_sigpipe", test_no_sigpipe },
    { "local_argument_errors", test_local_argument_errors },
    { "connect_errors", test_connect_errors },
    { "names", test_names },
};

int main(int argc, char **argv) {
    int ran = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int selected = argc < 2;
        for (int a = 1; a < argc; a++) {
            if (strcmp(argv[a], tests[i].name) == 0) selected = 1;
        }
        if (!selected) continue;
        current_test = tests[i].name;
        int before = failures;
        tests[i].run();
        printf("%s %s\n", failures == before ? "ok  " : "FAIL", tests[i].name);
        fflush(stdout);
        ran++;
    }
    printf("%d tests, %d failed checks\n", ran, failures);
    return failures == 0 && ran > 0 ? 0 : 1;
}
