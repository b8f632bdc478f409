/*
 * boxd-init: a container's PID 1 for `--init` (the behaviour of tini, written anew).
 *
 *     boxd-init -- COMMAND [ARG...]
 *
 * A process that is PID 1 of a PID namespace gets no default signal actions (a SIGTERM
 * to a plain `sh` as PID 1 does nothing) and inherits every orphan of the namespace,
 * which it must reap or they stay zombies.  boxd-init runs COMMAND as its child and:
 *
 *   - forwards every signal it receives to the child (SIGTERM from `boxctl stop`, SIGINT,
 *     SIGHUP, SIGUSR1 ...), so the command gets the default actions it expects;
 *   - reaps every process that ends in the namespace (orphans included);
 *   - exits as soon as the child has ended, with its exit code, or 128 + the signal that
 *     killed it; the kernel then kills what is left in the namespace.
 *
 * In a pid namespace it shares (`--pid host`, `--pid container:NAME`) it is not PID 1: it
 * makes itself the child subreaper of what it starts, so the command's orphans are still
 * its own to reap, not the namespace's init's.
 *
 * Signals are blocked and taken with sigtimedwait, never with handlers: a blocked signal
 * is queued even for a namespace's PID 1 (which otherwise ignores signals it has no
 * handler for).  The child gets its own process group and, on a terminal, the
 * foreground, as tini does; the terminal's Ctrl-C then reaches it directly.  Static, no
 * allocation: it runs in any root filesystem.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Signals about this process itself (faults): never blocked, never forwarded. */
static const int own_signals[] = {SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGABRT, SIGTRAP, SIGSYS};

static void say(const char *what, const char *arg, int err)
{
    fprintf(stderr, "boxd-init: %s%s%s%s%s\n", what, arg ? " " : "", arg ? arg : "",
            err ? ": " : "", err ? strerror(err) : "");
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 255;
}

int main(int argc, char **argv)
{
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "--") == 0)
        first = 2;
    if (first >= argc) {
        say("usage: boxd-init -- COMMAND [ARG...]", NULL, 0);
        return 2;
    }

    sigset_t all, old;
    sigfillset(&all);
    for (size_t i = 0; i < sizeof own_signals / sizeof own_signals[0]; i++)
        sigdelset(&all, own_signals[i]);
    if (sigprocmask(SIG_SETMASK, &all, &old) < 0) {
        say("sigprocmask", NULL, errno);
        return 1;
    }

    if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
        say("prctl PR_SET_CHILD_SUBREAPER", NULL, errno);
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        say("fork", NULL, errno);
        return 1;
    }
    if (child == 0) {
        /* Its own process group, the terminal's foreground when there is one (SIGTTOU
         * is still blocked here, so a background group may take it). */
        setpgid(0, 0);
        if (isatty(STDIN_FILENO))
            tcsetpgrp(STDIN_FILENO, getpgrp());
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvp(argv[first], &argv[first]);
        int err = errno;
        say("exec", argv[first], err);
        _exit(err == ENOENT || err == ENOTDIR ? 127 : 126);
    }

    for (;;) {
        siginfo_t info;
        struct timespec tick = {.tv_sec = 1, .tv_nsec = 0};
        int sig = sigtimedwait(&all, &info, &tick);
        if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            say("sigtimedwait", NULL, errno);
            return 1;
        }
        if (sig > 0 && sig != SIGCHLD && kill(child, sig) < 0 && errno != ESRCH)
            say("forward a signal", NULL, errno);
        /* Reap everything that has ended (a SIGCHLD may stand for several, and the tick
         * catches any whose signal was merged). */
        for (;;) {
            int status;
            pid_t pid = waitpid(-1, &status, WNOHANG);
            if (pid <= 0)
                break;
            if (pid == child)
                return exit_code(status);
        }
    }
}
