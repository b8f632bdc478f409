/*
 * gather_read(): the read loop of a terminal's output reader (boxd/_ptyout.py) without the
 * GIL.  A PTY master gives at most 4 KiB a read and the next read usually finds the line
 * discipline's buffer dry (a short poll until the kernel worker refills it): done in
 * Python, every 4 KiB costs the reader thread the GIL back three times, each a hand-off
 * with the event loop's thread.  Here the whole chunk is gathered in one call.
 *
 * Given the `tasks` files of two v1 cpu cgroups, the calling thread reads in the first (the
 * container's) and goes back to the second before it takes the GIL again: each 4 KiB hand-off
 * of a terminal between the container's writer and its reader is a wakeup, and across two CPU
 * groups the scheduler serves it ~30% later (see bench/README).  Outside the call the thread
 * holds the GIL, so it never does that in the container's group, where the container's own
 * threads or its CPU quota could keep it waiting and the daemon with it.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "gather.h"

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Once a chunk holds this much the output is a stream, not a screen being drawn: the reader
 * then waits up to the whole limit for the next bytes, not just the gap (see gather()). */
#define STREAM_SIZE (64 * 1024)

/* Read the non-blocking fd into buf until it is full, the writer pauses for gap_ns (once
 * something was read; limit_ns once STREAM_SIZE was) or limit_ns passed since the start;
 * *ended at end of file or EIO (a PTY master whose last slave fd closed).  The size read,
 * or -1 with errno set.
 *
 * After the first read each one waits in poll() until the master has bytes.  A read of a
 * master whose line discipline ran dry waits instead for the kernel worker's whole refill
 * (flush_work), not for its first bytes: read until EAGAIN, 256 MiB took ~1.3x as long.
 * A poll() timeout shorter than the scheduler's tick makes every wait arm and cancel the
 * CPU's timer hardware, which a VM pays for in exits to its host: with the gap's 1 ms on
 * each wait, 256 MiB took ~1.35x as long as with 10 ms (bench/README, session 43). */
static Py_ssize_t gather(int fd, char *buf, Py_ssize_t size, long long gap_ns,
                         long long limit_ns, int *ended)
{
    Py_ssize_t got = 0;
    long long deadline = now_ns() + limit_ns;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    *ended = 0;
    while (got < size) {
        if (got) {
            long long left = deadline - now_ns();
            if (left <= 0)
                return got;
            long long wait = got >= STREAM_SIZE ? limit_ns : left < gap_ns ? left : gap_ns;
            /* Rounded up: a wait of 0 ms would spin. */
            int ready = poll(&p, 1, (int)((wait + 999999) / 1000000));
            if (ready == 0 || (ready < 0 && errno != EINTR))
                return got;
        }
        ssize_t n = read(fd, buf + got, (size_t)(size - got));
        if (n > 0) {
            got += n;
            continue;
        }
        if (n == 0 || errno == EIO) {
            *ended = 1;
            return got;
        }
        if (errno == EINTR || (errno == EAGAIN && got))
            continue; /* a signal, or polled ready without bytes yet: wait again */
        /* EAGAIN before any byte: the caller waits; another error: what was read first,
         * the error again at the next call. */
        return got || errno == EAGAIN ? got : -1;
    }
    return got;
}

/* The calling thread moves to the v1 cgroup whose `tasks` file is open as tasks_fd ("0": the
 * caller itself, one thread; the kernel takes no lock of the whole thread group for it). */
static int move_self(int tasks_fd)
{
    ssize_t n;
    do {
        n = write(tasks_fd, "0", 1);
    } while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -1;
}

PyObject *gather_read(PyObject *self, PyObject *args)
{
    (void)self;
    int fd, group = -1, home = -1;
    Py_buffer view;
    double gap, limit;
    if (!PyArg_ParseTuple(args, "iw*dd|ii:gather_read", &fd, &view, &gap, &limit, &group, &home))
        return NULL;
    int ended = 0, saved = 0, stayed = 0;
    Py_ssize_t got;
    Py_BEGIN_ALLOW_THREADS
    int joined = group >= 0 && home >= 0 && move_self(group) == 0;
    got = gather(fd, view.buf, view.len, (long long)(gap * 1e9), (long long)(limit * 1e9),
                 &ended);
    saved = errno;
    /* Twice: a failure here leaves the thread in the container's group (the caller stops
     * moving it, and it ends with its burst of output). */
    if (joined && move_self(home) != 0 && move_self(home) != 0)
        stayed = 1;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (got < 0) {
        errno = saved;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return Py_BuildValue("(nOO)", got, ended ? Py_True : Py_False, stayed ? Py_True : Py_False);
}
