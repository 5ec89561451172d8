/*
 * Bare ttrpc echo server: the RPC limit that creditbench compares creditd with.
 *
 * One thread, epoll, non-blocking read/write. For every complete frame it reads it parses the
 * 10-byte header and answers a Request with a Response frame on the same stream id whose data is
 * a ttrpc Response message (field 2, payload) of exactly RESPONSE_BYTES bytes, the size creditd
 * answers with. No protobuf decoding, no allocation per call: what is left is framing and syscalls.
 *
 * usage: echo_server SOCKET_PATH RESPONSE_BYTES
 * Prints "ready" on stdout once listening; exits on SIGTERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_EVENTS 64
#define IN_CAPACITY (1 << 20)
#define OUT_CAPACITY (4 << 20)

struct conn {
    int fd;
    unsigned char *in;
    size_t in_len;
    unsigned char *out;
    size_t out_len;
    size_t out_sent;
};

static unsigned char response_data[1 << 16];
static size_t response_len;

static void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* A ttrpc Response with only `payload` set, padded so the whole message is `total` bytes. */
static void build_response(size_t total) {
    size_t payload = 0;
    for (size_t p = total; p > 0; p--) {
        size_t varint = 1;
        for (size_t v = p; v >= 0x80; v >>= 7) varint++;
        if (1 + varint + p == total) { payload = p; break; }
    }
    size_t at = 0;
    if (total > 0) {
        response_data[at++] = 0x12; /* field 2, length-delimited */
        size_t v = payload;
        while (v >= 0x80) { response_data[at++] = (unsigned char)(v | 0x80); v >>= 7; }
        response_data[at++] = (unsigned char)v;
        memset(response_data + at, 'x', payload);
        at += payload;
    }
    response_len = at;
}

static void close_conn(int epfd, struct conn *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Writes what is queued; returns -1 when the peer is gone. */
static int flush_out(int epfd, struct conn *c) {
    while (c->out_sent < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_sent, c->out_len - c->out_sent);
        if (n < 0) {
            if (errno == EAGAIN) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                return 0;
            }
            if (errno == EINTR) continue;
            return -1;
        }
        c->out_sent += (size_t)n;
    }
    c->out_len = c->out_sent = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

/* Answers every complete frame in the input buffer; returns -1 on a protocol error. */
static int handle_input(struct conn *c) {
    size_t at = 0;
    while (c->in_len - at >= 10) {
        const unsigned char *h = c->in + at;
        uint32_t length = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        if (length > (4u << 20)) return -1;
        if (c->in_len - at < 10 + (size_t)length) break;
        if (h[8] == 0x01 && c->out_len + 10 + response_len <= OUT_CAPACITY) {
            unsigned char *o = c->out + c->out_len;
            o[0] = (unsigned char)(response_len >> 24);
            o[1] = (unsigned char)(response_len >> 16);
            o[2] = (unsigned char)(response_len >> 8);
            o[3] = (unsigned char)response_len;
            memcpy(o + 4, h + 4, 4); /* same stream id */
            o[8] = 0x02;             /* Response */
            o[9] = 0;
            memcpy(o + 10, response_data, response_len);
            c->out_len += 10 + response_len;
        }
        at += 10 + length;
    }
    memmove(c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOCKET_PATH RESPONSE_BYTES\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    build_response((size_t)strtoul(argv[2], NULL, 10));

    int listener = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, argv[1], sizeof(addr.sun_path) - 1);
    unlink(argv[1]);
    if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(listener, 128) != 0) {
        perror("bind/listen");
        return 1;
    }
    set_nonblocking(listener);
    int epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev);
    printf("ready\n");
    fflush(stdout);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0 && errno == EINTR) continue;
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept(listener, NULL, NULL)) >= 0) {
                    set_nonblocking(fd);
                    struct conn *nc = calloc(1, sizeof(*nc));
                    nc->fd = fd;
                    nc->in = malloc(IN_CAPACITY);
                    nc->out = malloc(OUT_CAPACITY);
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (events[i].events & EPOLLOUT) {
                if (flush_out(epfd, c) < 0) { close_conn(epfd, c); continue; }
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = read(c->fd, c->in + c->in_len, IN_CAPACITY - c->in_len);
                if (r <= 0) {
                    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                    close_conn(epfd, c);
                    continue;
                }
                c->in_len += (size_t)r;
                if (handle_input(c) < 0 || flush_out(epfd, c) < 0) close_conn(epfd, c);
            }
        }
    }
}
