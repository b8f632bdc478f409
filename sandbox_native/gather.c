/*
 * gather_read(): the read loop of a terminal's output reader (boxd/_ptyout.py) without the
 * GIL.  A PTY master gives at most 4 KiB a read and the next read usually finds the line
 * discipline's buffer dry (a short poll until the kernel worker refills it): done in
 * Python, every 4 KiB costs the reader thread the GIL back three times, each a hand-off
 * with the event loop's thread.  Here the whole chunk is gathered in one call.
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

/* Read the non-blocking fd into buf until it is full, the writer pauses for gap_ns (once
 * something was read) or limit_ns passed since the start; *ended at end of file or EIO
 * (a PTY master whose last slave fd closed).  The size read, or -1 with errno set. */
static Py_ssize_t gather(int fd, char *buf, Py_ssize_t size, long long gap_ns,
                         long long limit_ns, int *ended)
{
    Py_ssize_t got = 0;
    long long deadline = now_ns() + limit_ns;
    *ended = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, (size_t)(size - got));
        if (n > 0) {
            got += n;
            continue;
        }
        if (n == 0 || errno == EIO) {
            *ended = 1;
            return got;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return got ? got : -1; /* what was read first; the error again at the next call */
        long long left = deadline - now_ns();
        if (!got || left <= 0)
            return got;
        long long wait = left < gap_ns ? left : gap_ns;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        /* Rounded up: a wait of 0 ms would spin. */
        int ready = poll(&p, 1, (int)((wait + 999999) / 1000000));
        if (ready < 0 && errno != EINTR)
            return got;
        if (ready == 0)
            return got;
    }
    return got;
}

PyObject *gather_read(PyObject *self, PyObject *args)
{
    (void)self;
    int fd;
    Py_buffer view;
    double gap, limit;
    if (!PyArg_ParseTuple(args, "iw*dd:gather_read", &fd, &view, &gap, &limit))
        return NULL;
    int ended = 0, saved = 0;
    Py_ssize_t got;
    Py_BEGIN_ALLOW_THREADS
    got = gather(fd, view.buf, view.len, (long long)(gap * 1e9), (long long)(limit * 1e9),
                 &ended);
    saved = errno;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (got < 0) {
        errno = saved;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return Py_BuildValue("(nO)", got, ended ? Py_True : Py_False);
}
