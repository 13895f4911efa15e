/*
 * Test servers for the C unit tests: redis-server and memcached started
 * on free loopback ports, stopped by PID (never by name), and never
 * outliving the test run (PR_SET_PDEATHSIG). Header-only (static inline)
 * so each check program takes what it uses without extra build rules.
 */
#ifndef BFF_TESTSRV_H
#define BFF_TESTSRV_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

typedef struct {
    pid_t pid;
    int port;
} server_t;

static inline void testsrv_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static inline void loopback(struct sockaddr_in *a, int port)
{
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->sin_port = htons((unsigned short)port);
}

/* A port nothing listens on right now (the kernel's choice). */
static inline int free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    loopback(&a, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a))
        || getsockname(fd, (struct sockaddr *)&a, &len)) {
        perror("free_port");
        exit(2);
    }
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static inline int port_open(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    loopback(&a, port);
    ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* Runs argv with stdio on /dev/null, in dir when not NULL. */
static inline pid_t spawn_in(char *const argv[], const char *dir)
{
    pid_t parent = getpid(), pid = fork();

    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        /* never outlive the test run, whatever happens to it */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || (dir && chdir(dir) != 0)) {
            _exit(1);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static inline pid_t spawn(char *const argv[])
{
    return spawn_in(argv, NULL);
}

/* Waits up to 5 s for s->port to accept connections; exits the test
 * program when it does not. */
static inline void wait_up(server_t *s, const char *what)
{
    int i;

    for (i = 0; i < 500; i++) {
        if (port_open(s->port)) {
            return;
        }
        testsrv_sleep_ms(10);
    }
    fprintf(stderr, "%s on port %d did not start\n", what, s->port);
    kill(s->pid, SIGKILL);
    exit(2);
}

static inline void server_stop(server_t *s)
{
    int i, status;

    if (s->pid <= 0) {
        return;
    }
    kill(s->pid, SIGTERM);
    for (i = 0; i < 200; i++) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        testsrv_sleep_ms(10);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
}

static inline void server_kill9(server_t *s)
{
    int status;

    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
}

/* redis-server on port (0: a free one), no persistence; password may be
 * NULL; it runs in dir (NULL: /tmp) where nothing is written. */
static inline void redis_start_in(server_t *s, int port, const char *password,
                                  const char *dir)
{
    char portbuf[16];
    char *argv[16];
    int n = 0;

    s->port = port ? port : free_port();
    snprintf(portbuf, sizeof(portbuf), "%d", s->port);
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = portbuf;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = (char *)(dir ? dir : "/tmp");
    if (password) {
        argv[n++] = "--requirepass";
        argv[n++] = (char *)password;
    }
    argv[n] = NULL;
    s->pid = spawn_in(argv, dir);
    wait_up(s, "redis-server");
}

static inline void redis_start(server_t *s, int port, const char *password)
{
    redis_start_in(s, port, password, NULL);
}

static inline void memcached_start(server_t *s, int port)
{
    char portbuf[16];
    char *argv[16];
    int n = 0;

    s->port = port ? port : free_port();
    snprintf(portbuf, sizeof(portbuf), "%d", s->port);
    argv[n++] = "memcached";
    argv[n++] = "-l";
    argv[n++] = "127.0.0.1";
    argv[n++] = "-p";
    argv[n++] = portbuf;
    argv[n++] = "-U";
    argv[n++] = "0";
    argv[n++] = "-m";
    argv[n++] = "64";
    if (geteuid() == 0) {
        argv[n++] = "-u";        /* memcached refuses root otherwise */
        argv[n++] = "root";
    }
    argv[n] = NULL;
    s->pid = spawn(argv);
    wait_up(s, "memcached");
}

#endif /* BFF_TESTSRV_H */
