/*
 * boxd-shim: the keeper of one container while daemons come and go (live restore).
 *
 * sandbox_native's spawn forks an intermediate process that clones the container, so the
 * container is this program's child: only its parent can reap it and learn its wait status.
 * The intermediate then makes the listening socket "shim.sock" in the container's directory
 * and execs this program with
 *
 *     fd 3  the listening socket (AF_UNIX, SOCK_SEQPACKET)
 *     fd 4  a pidfd of the container
 *
 * A daemon connects and gets a HELLO: the container's pid, whether it has exited and how,
 * and (SCM_RIGHTS) the pidfd and the stdio ends it asked this shim to hold.  The daemon
 * sends HOLD once it has the container's stdio (the read ends of its output pipes, the write
 * end of its stdin pipe, or its terminal's master): holding them is what keeps the container
 * from EPIPE, EOF on stdin or SIGHUP while no daemon runs; a full output pipe then blocks it.
 * With them may come the listener of the container's sysinfo filter (boxd/_sysinfo.py).
 * This program takes each call from it: with a daemon connected, it sends the daemon a
 * CALL (the call's id, caller and buffer), which the daemon answers on its copy of the
 * listener; without one, it lets the call go on to the kernel
 * (SECCOMP_USER_NOTIF_FLAG_CONTINUE: the host's values), so that no process of the
 * container waits for a daemon (glibc's qsort, so every python3 start, calls sysinfo).
 * A call is taken here, not by the daemon, so that a daemon killed before its answer
 * leaves no caller waiting for good: this program lets the calls it sent to a daemon that
 * went away go on too (those answered meanwhile are no longer pending, and the kernel
 * refuses a second answer).  The listener, held, goes to the next daemon, where a closed
 * one would fail the calls with ENOSYS.
 * When the container ends this program reaps it, keeps the status and sends EXIT to the
 * daemon if one is connected.  It ends only on DONE, which a daemon sends after it has read
 * the exit status and drained the output: a daemon that dies before that leaves the status
 * and the output to the next one.  One daemon at a time; a new connection waits until the
 * previous one has closed.
 *
 * Every message is one struct shim_msg (the layout boxd/_shim.py mirrors).  This program's
 * HELLO and EXIT append the time it reaped the container (struct shim_out): the daemon's
 * FinishedAt for an end no daemon saw, which a later daemon would otherwise stamp with its
 * own start.  A daemon of an older build reads the leading struct shim_msg and ignores the
 * rest; the daemon's messages to the shim are a bare struct shim_msg, as before.  The
 * program allocates nothing and holds at most seven fds: a few pages of memory per container.
 *
 * An orphan is a shim no daemon can ever reach: its "shim.sock" is gone (the container's
 * directory was deleted with the daemon's root, or the socket unlinked).  While no daemon
 * is connected the shim looks every ORPHAN_CHECK_MS; an orphan kills its container (the
 * init of a PID namespace: SIGKILL ends all of it), reaps it and exits, instead of keeping
 * an unsupervised container alive forever.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define SHIM_MAGIC 0x31535842u /* "BXS1" little-endian: the protocol's version */
#define LISTEN_FD 3
#define PIDFD 4
#define SLOTS 5 /* stdin, stdout, stderr, console, sysinfo listener: bit i of `held` */
#define SYSINFO 4
#define ORPHAN_CHECK_MS 5000

enum { MSG_HELLO = 1, MSG_EXIT = 2, MSG_HOLD = 3, MSG_CLOSE_STDIN = 4, MSG_DONE = 5, MSG_CALL = 6 };

struct shim_msg {
    uint32_t magic, type;
    int32_t pid;
    int32_t code;   /* 0 while running, else the si_code of the exit (CLD_EXITED, ...) */
    int32_t status; /* si_status: the exit code or the signal */
    uint32_t held;  /* HELLO, HOLD: which slots' fds follow (after HELLO's pidfd) */
};

struct shim_out {
    struct shim_msg m;
    int64_t exited_ns; /* CLOCK_REALTIME when the container was reaped; 0 while running */
};

/* CALL: a sysinfo call taken from the listener, for the daemon to answer (m.pid: the
 * caller, in this program's PID namespace, which is the daemon's). */
struct shim_call {
    struct shim_msg m;
    uint64_t id;      /* the notification's, for the answer */
    uint64_t address; /* sysinfo's argument: where the struct goes */
};

/* The ids of the last calls sent to the connected daemon: let go on when it goes away
 * unanswered.  Each waiting thread has one call at most; more than this many at once
 * overwrite the oldest, which a daemon killed at that moment then leaves waiting until
 * a signal comes to its caller. */
#define FORWARDED 256
static uint64_t forwarded[FORWARDED];
static unsigned nforwarded;

static int held[SLOTS] = {-1, -1, -1, -1, -1};
static int client = -1;
static pid_t pid;
static int32_t code, status;
static int64_t exited_ns;

static int send_msg(uint32_t type, const int *fds, int nfds)
{
    struct shim_out out = {{SHIM_MAGIC, type, pid, code, status, 0}, exited_ns};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * (SLOTS + 1))];
    } control;
    struct iovec iov = {.iov_base = &out, .iov_len = sizeof out};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    memset(&control, 0, sizeof control);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    for (int i = 0; i < SLOTS; i++)
        if (type == MSG_HELLO && held[i] >= 0)
            out.m.held |= 1u << i;
    if (nfds > 0) {
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do {
        n = sendmsg(client, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof out ? 0 : -1;
}

static void let_go_on(uint64_t id)
{
    struct seccomp_notif_resp answer = {.id = id, .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE};
    ioctl(held[SYSINFO], SECCOMP_IOCTL_NOTIF_SEND, &answer); /* ENOENT: answered, or killed */
}

static void drop_client(void)
{
    close(client);
    client = -1;
    if (held[SYSINFO] >= 0)
        for (unsigned i = 0; i < nforwarded && i < FORWARDED; i++)
            let_go_on(forwarded[i]);
    nforwarded = 0;
}

static void greet(void)
{
    int fds[SLOTS + 1], n = 0;
    fds[n++] = PIDFD;
    for (int i = 0; i < SLOTS; i++)
        if (held[i] >= 0)
            fds[n++] = held[i];
    if (send_msg(MSG_HELLO, fds, n) < 0)
        drop_client();
}

/* One message from the daemon; the connection is dropped on EOF or nonsense. */
static void receive(void)
{
    struct shim_msg m;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * SLOTS)];
    } control;
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof m};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    ssize_t n;
    do {
        n = recvmsg(client, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    int fds[SLOTS], nfds = 0;
    struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
    if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)nfds);
    }
    int wanted = 0;
    if (n == (ssize_t)sizeof m && m.magic == SHIM_MAGIC && m.type == MSG_HOLD)
        wanted = __builtin_popcount(m.held & ((1u << SLOTS) - 1));
    if (n != (ssize_t)sizeof m || m.magic != SHIM_MAGIC || nfds != wanted ||
        (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        drop_client();
        return;
    }
    switch (m.type) {
    case MSG_HOLD:
        for (int i = 0, k = 0; i < SLOTS; i++) {
            if (held[i] >= 0)
                close(held[i]);
            held[i] = (m.held >> i) & 1 ? fds[k++] : -1;
        }
        break;
    case MSG_CLOSE_STDIN:
        if (held[0] >= 0)
            close(held[0]);
        held[0] = -1;
        break;
    case MSG_DONE:
        if (code != 0) { /* only an ended container's shim may go */
            unlink("shim.sock");
            exit(0);
        }
        drop_client();
        break;
    default:
        drop_client();
    }
}

/* The container's pid, from its pidfd (fdinfo "Pid:"), read while it surely runs. */
static pid_t pid_of_pidfd(void)
{
    char text[512];
    int fd = open("/proc/self/fdinfo/4", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof text - 1);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    char *line = strstr(text, "\nPid:");
    return line == NULL ? -1 : (pid_t)strtol(line + 5, NULL, 10);
}

/* A sysinfo call: sent to the connected daemon, or made by the kernel as if not
 * intercepted.  The receive fails (ENOENT) when the caller was killed since the poll; once
 * no process is left under the filter (POLLHUP without POLLIN) none can call any more:
 * let the listener go. */
static void take_sysinfo(short revents)
{
    if (!(revents & POLLIN)) {
        close(held[SYSINFO]);
        held[SYSINFO] = -1;
        return;
    }
    struct seccomp_notif call;
    memset(&call, 0, sizeof call);
    if (ioctl(held[SYSINFO], SECCOMP_IOCTL_NOTIF_RECV, &call) < 0)
        return;
    if (client >= 0) {
        struct shim_call out = {{SHIM_MAGIC, MSG_CALL, (int32_t)call.pid, code, status, 0},
                                call.id,
                                call.data.args[0]};
        forwarded[nforwarded++ % FORWARDED] = call.id;
        ssize_t n;
        do {
            n = send(client, &out, sizeof out, MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n != (ssize_t)sizeof out)
            drop_client(); /* lets this call go on with the others */
        return;
    }
    let_go_on(call.id);
}

/* No daemon can ever connect again: end the container and this shim. */
static void end_orphan(void)
{
    if (code == 0) {
        syscall(SYS_pidfd_send_signal, PIDFD, SIGKILL, NULL, 0);
        siginfo_t info;
        while (waitid((idtype_t)P_PIDFD, PIDFD, &info, WEXITED) < 0 && errno == EINTR)
            ;
    }
    exit(0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    pid = pid_of_pidfd();
    if (pid <= 0)
        return 2;
    for (;;) {
        struct pollfd p[3];
        int n = 0, waiting = code == 0, calls = held[SYSINFO] >= 0;
        if (waiting)
            p[n++] = (struct pollfd){.fd = PIDFD, .events = POLLIN};
        if (calls)
            p[n++] = (struct pollfd){.fd = held[SYSINFO], .events = POLLIN};
        p[n++] = (struct pollfd){.fd = client >= 0 ? client : LISTEN_FD, .events = POLLIN};
        int ready = poll(p, (nfds_t)n, client >= 0 ? -1 : ORPHAN_CHECK_MS);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            return 3;
        }
        if (ready == 0) {
            if (faccessat(AT_FDCWD, "shim.sock", F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
                end_orphan();
            continue;
        }
        if (waiting && p[0].revents) {
            siginfo_t info;
            memset(&info, 0, sizeof info);
            if (waitid((idtype_t)P_PIDFD, PIDFD, &info, WEXITED) < 0 && errno != EINTR)
                return 4;
            if (info.si_pid != 0) {
                struct timespec now;
                clock_gettime(CLOCK_REALTIME, &now);
                exited_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
                code = info.si_code;
                status = info.si_status;
                if (client >= 0 && send_msg(MSG_EXIT, NULL, 0) < 0)
                    drop_client();
            }
        }
        if (calls && p[n - 2].revents)
            take_sysinfo(p[n - 2].revents);
        struct pollfd *io = &p[n - 1];
        if (!io->revents)
            continue;
        if (io->fd == LISTEN_FD) {
            client = accept4(LISTEN_FD, NULL, NULL, SOCK_CLOEXEC);
            if (client >= 0)
                greet();
        } else if (io->fd == client) {
            receive();
        }
    }
}
