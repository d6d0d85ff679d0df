/*
 * agent_helper.c - small servers for the moat-agent tests.
 *
 *   agent_helper sntp PORTFILE MODE
 *       A fake SNTP server on 127.0.0.1, on a free UDP port written to
 *       PORTFILE. It prints one line per request on stdout. MODE:
 *         now        answer with the real time (the clock becomes valid)
 *         unix:S     answer with Unix time S (e.g. 0 or 1577836800, 2020)
 *         unsync     answer "not synchronised" (leap indicator 3, stratum 16)
 *         silent     never answer
 *   agent_helper notify SOCKET OUTFILE
 *       A systemd notify socket: every datagram received on the AF_UNIX
 *       socket SOCKET is appended to OUTFILE, one per line.
 *
 * Both run until killed (the tests stop them by pid).
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define NTP_UNIX_DELTA 2208988800ull

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Unix seconds + nanoseconds as a 64-bit NTP timestamp (era 0, wrapping). */
static void put_ts(uint8_t *p, int64_t unix_s, long nsec)
{
    uint64_t sec = (uint64_t)(unix_s + (int64_t)NTP_UNIX_DELTA);
    put32(p, (uint32_t)sec);
    put32(p + 4, (uint32_t)(((uint64_t)nsec << 32) / 1000000000u));
}

static int sntp(const char *portfile, const char *mode)
{
    struct sockaddr_in a, from;
    socklen_t alen = sizeof a;
    uint8_t req[512], rep[48];
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    FILE *f;
    int64_t fixed = 0;
    int kind; /* 0 now, 1 fixed, 2 unsync, 3 silent */

    if (strcmp(mode, "now") == 0)
        kind = 0;
    else if (strncmp(mode, "unix:", 5) == 0)
        kind = 1, fixed = strtoll(mode + 5, NULL, 10);
    else if (strcmp(mode, "unsync") == 0)
        kind = 2;
    else if (strcmp(mode, "silent") == 0)
        kind = 3;
    else {
        fprintf(stderr, "agent_helper sntp: unknown mode '%s'\n", mode);
        return 2;
    }
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        perror("agent_helper sntp: bind");
        return 1;
    }
    f = fopen(portfile, "w");
    if (f == NULL) {
        perror(portfile);
        return 1;
    }
    fprintf(f, "%u\n", ntohs(a.sin_port));
    fclose(f);
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (;;) {
        socklen_t flen = sizeof from;
        struct timespec now;
        ssize_t n = recvfrom(fd, req, sizeof req, 0, (struct sockaddr *)&from, &flen);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("agent_helper sntp: recvfrom");
            return 1;
        }
        printf("request %zd bytes\n", n);
        if (kind == 3 || n < 48)
            continue;
        clock_gettime(CLOCK_REALTIME, &now);
        if (kind == 1) {
            now.tv_sec = (time_t)fixed;
            now.tv_nsec = 0;
        }
        memset(rep, 0, sizeof rep);
        rep[0] = (uint8_t)((kind == 2 ? 3u : 0u) << 6 | 4u << 3 | 4u); /* LI, VN 4, server */
        rep[1] = kind == 2 ? 16 : 2;                                   /* stratum */
        rep[2] = req[2];
        rep[3] = (uint8_t)-20;
        put32(rep + 4, 0x00000100);  /* root delay */
        put32(rep + 8, 0x00000100);  /* root dispersion */
        memcpy(rep + 12, "LOCL", 4);
        put_ts(rep + 16, (int64_t)now.tv_sec - 10, 0);    /* reference */
        memcpy(rep + 24, req + 40, 8);                    /* originate = their transmit */
        put_ts(rep + 32, (int64_t)now.tv_sec, now.tv_nsec); /* receive */
        put_ts(rep + 40, (int64_t)now.tv_sec, now.tv_nsec); /* transmit */
        sendto(fd, rep, sizeof rep, 0, (struct sockaddr *)&from, flen);
    }
}

static int notify(const char *path, const char *out)
{
    struct sockaddr_un a;
    char buf[4096];
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    FILE *f = fopen(out, "a");

    if (fd < 0 || f == NULL || strlen(path) >= sizeof a.sun_path) {
        perror("agent_helper notify");
        return 1;
    }
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, path);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("agent_helper notify: bind");
        return 1;
    }
    setvbuf(f, NULL, _IOLBF, 0);
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("agent_helper notify: recv");
            return 1;
        }
        buf[n] = '\0';
        fprintf(f, "%s\n", buf);
    }
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "sntp") == 0)
        return sntp(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "notify") == 0)
        return notify(argv[2], argv[3]);
    fprintf(stderr, "usage: agent_helper sntp PORTFILE now|unix:S|unsync|silent\n"
                    "       agent_helper notify SOCKET OUTFILE\n");
    return 2;
}
