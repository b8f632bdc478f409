/*
 * sandbox_native: the Python glue of boxd's spawn path.
 *
 * spawn() converts the whole SpawnPlan (boxd/_native.py) into C memory (struct plan,
 * spawn.h), clones and returns (pid, pidfd, sync_fd, shim_pidfd, report_fd) at once.  What
 * the child does between clone and exec is in child.c, which does not include Python.h;
 * the messages on the sync socket are struct sync_msg (spawn.h).  The extension also
 * exports the numbers of spawn.h's enums (STAGES, MOUNT_KINDS, MESSAGES: name -> value) so
 * that a test compares them with their Python copies.
 *
 * Modes (see child.c): plain (the container's process is our child), join (exec into a
 * running container: an intermediate setns()es and creates the final process; spawn()
 * returns the intermediate's pid and pidfd and, as the fifth value, the pipe on which it
 * reports the final pid), shim (live restore: the container is the child of an
 * intermediate that becomes boxd-shim; its pidfd is returned as the fourth value, its pid
 * as the first, and the socket it reports the container on as the fifth: the container's
 * pidfd is -1 until the caller has that report).  The caller waits for those reports in
 * its event loop (boxd/_native.py).
 *
 * rebind() replaces mounts inside a running container; idmapped_tree() and clone_tree()
 * make the detached trees it and the spawn path attach.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gather.h"
#include "tree.h"
#include "spawn.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* ------------------------------------------------------------------ parent side */

/* n + 1 zeroed items (a NULL-terminated array); NULL with MemoryError set. */
static void *zeroed(Py_ssize_t n, size_t size)
{
    void *array = PyMem_Calloc((size_t)n + 1, size);
    if (array == NULL)
        PyErr_NoMemory();
    return array;
}

/* A bytes object's buffer, refusing embedded NULs; NULL with an exception set. */
static const char *cstring(PyObject *obj, const char *what)
{
    char *buffer;
    Py_ssize_t size;
    if (!PyBytes_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes, not %R", what, (PyObject *)Py_TYPE(obj));
        return NULL;
    }
    if (PyBytes_AsStringAndSize(obj, &buffer, &size) < 0)
        return NULL;
    if ((Py_ssize_t)strlen(buffer) != size) {
        PyErr_Format(PyExc_ValueError, "%s contains a NUL byte: %R", what, obj);
        return NULL;
    }
    return buffer;
}

/* A NULL-terminated array of a tuple of bytes' buffers (PyMem_Free it); NULL tuple: empty. */
static const char **string_array(PyObject *tuple, const char *what, size_t *count)
{
    Py_ssize_t n = tuple == NULL ? 0 : PyTuple_Size(tuple);
    const char **array = zeroed(n, sizeof *array);
    if (array == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        array[i] = cstring(PyTuple_GetItem(tuple, i), what);
        if (array[i] == NULL) {
            PyMem_Free(array);
            return NULL;
        }
    }
    if (count != NULL)
        *count = (size_t)n;
    return array;
}

static int parse_mounts(PyObject *tuple, struct plan *p)
{
    Py_ssize_t n = PyTuple_Size(tuple);
    p->mounts = zeroed(n, sizeof *p->mounts);
    if (p->mounts == NULL)
        return -1;
    p->nmounts = (size_t)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        struct mount_op *op = &p->mounts[i];
        PyObject *target, *source, *fstype, *data;
        if (!PyArg_ParseTuple(PyTuple_GetItem(tuple, i), "iSSSkSIK;a mount op is (kind, "
                              "target, source, fstype, flags, data, mode, dev)",
                              &op->kind, &target, &source, &fstype, &op->flags, &data,
                              &op->mode, &op->dev))
            return -1;
        if (op->kind < MK_MOUNT || op->kind > MK_ATTACH) {
            PyErr_Format(PyExc_ValueError, "mount op %zd: unknown kind %d", i, op->kind);
            return -1;
        }
        op->target = cstring(target, "mount target");
        op->source = cstring(source, "mount source");
        op->fstype = cstring(fstype, "mount fstype");
        op->data = cstring(data, "mount data");
        if (!op->target || !op->source || !op->fstype || !op->data)
            return -1;
        /* mount(2) takes NULL for "not given"; an empty string is a (bad) value. */
        if (*op->source == '\0')
            op->source = NULL;
        if (*op->fstype == '\0')
            op->fstype = NULL;
        if (*op->data == '\0')
            op->data = NULL;
    }
    return 0;
}

static int parse_rlimits(PyObject *tuple, struct plan *p)
{
    Py_ssize_t n = PyTuple_Size(tuple);
    p->rlimits = zeroed(n, sizeof *p->rlimits);
    if (p->rlimits == NULL)
        return -1;
    p->nrlimits = (size_t)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        long long soft, hard;
        if (!PyArg_ParseTuple(PyTuple_GetItem(tuple, i), "iLL;an rlimit is (resource, soft, "
                              "hard)", &p->rlimits[i].resource, &soft, &hard))
            return -1;
        p->rlimits[i].cur = soft < 0 ? UINT64_MAX : (uint64_t)soft;
        p->rlimits[i].max = hard < 0 ? UINT64_MAX : (uint64_t)hard;
    }
    return 0;
}

static int parse_ns_fds(PyObject *tuple, struct plan *p)
{
    Py_ssize_t n = PyTuple_Size(tuple);
    if (n > MAX_JOIN) {
        PyErr_Format(PyExc_ValueError, "at most %d namespaces to join, not %zd", MAX_JOIN, n);
        return -1;
    }
    p->nns = (size_t)n;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!PyArg_ParseTuple(PyTuple_GetItem(tuple, i), "ii;a namespace to join is (fd, type)",
                              &p->ns_fds[i], &p->ns_types[i]))
            return -1;
    return 0;
}

static int parse_groups(PyObject *tuple, struct plan *p)
{
    Py_ssize_t n = PyTuple_Size(tuple);
    p->groups = zeroed(n, sizeof *p->groups);
    if (p->groups == NULL)
        return -1;
    p->ngroups = (size_t)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long gid = PyLong_AsUnsignedLong(PyTuple_GetItem(tuple, i));
        if (PyErr_Occurred())
            return -1;
        if (gid > UINT_MAX - 1) {
            PyErr_Format(PyExc_ValueError, "group id %lu is out of range", gid);
            return -1;
        }
        p->groups[i] = (gid_t)gid;
    }
    return 0;
}

/* A tuple of at most `max` fds, each at least `lowest`, into fds[] and *count. */
static int parse_fd_tuple(PyObject *tuple, int *fds, size_t *count, Py_ssize_t max, int lowest,
                          const char *what)
{
    Py_ssize_t n = PyTuple_Size(tuple);
    if (n > max) {
        PyErr_Format(PyExc_ValueError, "at most %zd %s, not %zd", max, what, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        fds[i] = (int)PyLong_AsLong(PyTuple_GetItem(tuple, i));
        if (PyErr_Occurred())
            return -1;
        if (fds[i] < lowest) {
            PyErr_Format(PyExc_ValueError, "%s: %d is not an fd at least %d", what, fds[i],
                         lowest);
            return -1;
        }
    }
    *count = (size_t)n;
    return 0;
}

/* An IPv4 address given as 4 bytes (network byte order). */
static int ipv4(const char *bytes, Py_ssize_t size, const char *what, uint32_t *out)
{
    if (size != 4) {
        PyErr_Format(PyExc_ValueError, "%s must be 4 bytes, not %zd", what, size);
        return -1;
    }
    memcpy(out, bytes, 4);
    return 0;
}

/* links: ((name, address, netmask), ...), each a bytes. */
static int parse_links(PyObject *tuple, struct plan *p)
{
    Py_ssize_t n = PyTuple_Size(tuple);
    if (n > MAX_LINKS) {
        PyErr_Format(PyExc_ValueError, "at most %d interfaces, not %zd", MAX_LINKS, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *name, *address, *netmask;
        Py_ssize_t nlen, alen, mlen;
        if (!PyArg_ParseTuple(PyTuple_GetItem(tuple, i),
                              "y#y#y#;an interface is (name, address, netmask)", &name, &nlen,
                              &address, &alen, &netmask, &mlen))
            return -1;
        if (nlen < 1 || nlen >= (Py_ssize_t)sizeof p->links[i].name ||
            (Py_ssize_t)strlen(name) != nlen) {
            PyErr_Format(PyExc_ValueError, "interface name %R is not 1 to 15 bytes",
                         PyTuple_GetItem(PyTuple_GetItem(tuple, i), 0));
            return -1;
        }
        memcpy(p->links[i].name, name, (size_t)nlen + 1);
        if (ipv4(address, alen, "an interface's address", &p->links[i].address) < 0 ||
            ipv4(netmask, mlen, "an interface's netmask", &p->links[i].netmask) < 0)
            return -1;
    }
    p->nlinks = (size_t)n;
    return 0;
}

static void free_plan(struct plan *p)
{
    PyMem_Free(p->argv);
    PyMem_Free(p->envp);
    PyMem_Free(p->search);
    PyMem_Free(p->mounts);
    PyMem_Free(p->attach);
    PyMem_Free(p->groups);
    PyMem_Free(p->rlimits);
    PyMem_Free(p->filter);
    PyMem_Free(p->shim_argv);
}

/* None or bytes -> NULL or the buffer; 0 on success. */
static int optional_cstring(PyObject *obj, const char *what, const char **out)
{
    *out = NULL;
    if (obj == NULL || obj == Py_None)
        return 0;
    *out = cstring(obj, what);
    return *out == NULL ? -1 : 0;
}

static int parse_caps(PyObject *caps, struct plan *p)
{
    unsigned long long sets[5];
    if (caps == NULL || caps == Py_None)
        return 0;
    if (!PyArg_ParseTuple(caps, "KKKKK;caps is (bounding, effective, permitted, inheritable, "
                          "ambient)", &sets[0], &sets[1], &sets[2], &sets[3], &sets[4]))
        return -1;
    p->has_caps = 1;
    p->bounding = sets[0];
    p->effective = sets[1];
    p->permitted = sets[2];
    p->inheritable = sets[3];
    p->ambient = sets[4];
    return 0;
}

static int parse_seccomp(PyObject *program, struct plan *p)
{
    char *buffer;
    Py_ssize_t size;
    if (program == NULL || program == Py_None)
        return 0;
    if (!PyBytes_Check(program)) {
        PyErr_Format(PyExc_TypeError, "seccomp must be bytes or None, not %R",
                     (PyObject *)Py_TYPE(program));
        return -1;
    }
    if (PyBytes_AsStringAndSize(program, &buffer, &size) < 0)
        return -1;
    if (size == 0 || size % (Py_ssize_t)sizeof(struct sock_filter) != 0 ||
        size / (Py_ssize_t)sizeof(struct sock_filter) > BPF_MAXINSNS) {
        PyErr_Format(PyExc_ValueError,
                     "seccomp program of %zd bytes is not 1 to %d instructions of %zu bytes",
                     size, BPF_MAXINSNS, sizeof(struct sock_filter));
        return -1;
    }
    p->filter = PyMem_Malloc((size_t)size);
    if (p->filter == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(p->filter, buffer, (size_t)size);
    p->nfilter = (unsigned short)(size / (Py_ssize_t)sizeof(struct sock_filter));
    return 0;
}

static int parse_plan(PyObject *args, PyObject *kwargs, struct plan *p)
{
    static char *keywords[] = {
        "argv", "env", "search_path", "clone_flags", "hostname", "rootfs", "mounts", "cwd",
        "uid", "gid", "groups", "stdio", "console", "rlimits", "caps",
        "no_new_privs", "seccomp", "join_pidfd", "join_flags", "process_name", "attach",
        "start_fd", "keep_fds", "shim_path", "shim_dir", "shim_argv", "ns_fds",
        "cgroup_tasks", "cgroup_dir", "links", "gateway", "die_with_caller", "console_size",
        "mount_fds", "umask", "sysinfo", NULL,
    };
    PyObject *argv = NULL, *env = NULL, *search = NULL, *hostname = NULL, *rootfs = NULL;
    PyObject *mounts = NULL, *groups = NULL, *rlimits = NULL, *caps = NULL, *seccomp = NULL;
    PyObject *cwd = NULL, *name = NULL, *attach = NULL, *shim_path = NULL, *shim_dir = NULL;
    PyObject *shim_argv = NULL, *ns_fds = NULL, *cgroup_tasks = NULL, *links = NULL;
    PyObject *mount_fds = NULL;
    const char *gateway = NULL;
    Py_ssize_t gateway_size = 0;
    unsigned long long clone_flags = 0, join_flags = 0;
    int rows = 24, cols = 80;

    p->stdio[0] = p->stdio[1] = p->stdio[2] = -1;
    p->umask = -1;
    p->join_pidfd = -1;
    p->start_fd = -1;
    p->cgroup_dir = -1;
    /* Where this thread runs now: the child sets up elsewhere (child.c). */
    p->caller_cpu = sched_getcpu();
    p->caller_pid = getpid();
    for (int i = 0; i < MAX_JOIN; i++)
        p->ns_fds[i] = -1;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "|$O!O!O!KOOO!OIIO!(iii)pO!OpOiKOO!iiOOO!O!O!iO!y#p(ii)O!ip:spawn", keywords,
            &PyTuple_Type, &argv, &PyTuple_Type, &env, &PyTuple_Type, &search, &clone_flags,
            &hostname, &rootfs, &PyTuple_Type, &mounts, &cwd, &p->uid, &p->gid, &PyTuple_Type,
            &groups, &p->stdio[0], &p->stdio[1], &p->stdio[2], &p->console, &PyTuple_Type,
            &rlimits, &caps, &p->nnp, &seccomp, &p->join_pidfd, &join_flags, &name,
            &PyTuple_Type, &attach, &p->start_fd, &p->keep_fds, &shim_path, &shim_dir,
            &PyTuple_Type, &shim_argv, &PyTuple_Type, &ns_fds, &PyTuple_Type, &cgroup_tasks,
            &p->cgroup_dir, &PyTuple_Type, &links, &gateway, &gateway_size,
            &p->die_with_caller, &rows, &cols, &PyTuple_Type, &mount_fds, &p->umask,
            &p->sysinfo))
        return -1;
    if (p->umask < -1 || p->umask > 0777) {
        PyErr_Format(PyExc_ValueError, "umask %d is out of range 0..0777 (-1: the caller's)",
                     p->umask);
        return -1;
    }
    if (rows < 1 || rows > 65535 || cols < 1 || cols > 65535) {
        PyErr_Format(PyExc_ValueError, "console_size (%d, %d) is out of range 1..65535",
                     rows, cols);
        return -1;
    }
    p->console_rows = (unsigned short)rows;
    p->console_cols = (unsigned short)cols;
    if (p->keep_fds < 0 || p->keep_fds > 65536) {
        PyErr_Format(PyExc_ValueError, "keep_fds %d is out of range 0..65536", p->keep_fds);
        return -1;
    }
    if (optional_cstring(shim_path, "shim_path", &p->shim_path) < 0 ||
        optional_cstring(shim_dir, "shim_dir", &p->shim_dir) < 0)
        return -1;
    if (p->shim_path != NULL) {
        if (p->shim_dir == NULL || shim_argv == NULL || PyTuple_Size(shim_argv) == 0 ||
            p->join_pidfd >= 0 || p->start_fd >= 0 || p->keep_fds > 0 || p->die_with_caller) {
            PyErr_SetString(PyExc_ValueError,
                            "a shim needs shim_dir and a non-empty shim_argv, and no "
                            "join_pidfd, start_fd, keep_fds or die_with_caller");
            return -1;
        }
        p->shim_argv = (char **)string_array(shim_argv, "a shim argv item", NULL);
        if (p->shim_argv == NULL)
            return -1;
    }
    if (argv == NULL || PyTuple_Size(argv) == 0) {
        PyErr_SetString(PyExc_ValueError, "argv must be a non-empty tuple of bytes");
        return -1;
    }
    p->clone_flags = clone_flags;
    p->join_flags = join_flags;
    p->argv = (char **)string_array(argv, "an argv item", NULL);
    if (p->argv == NULL)
        return -1;
    p->envp = (char **)string_array(env, "an env item", NULL);
    if (p->envp == NULL)
        return -1;
    p->search = string_array(search, "a search path entry",
                             &p->nsearch);
    if (p->search == NULL)
        return -1;
    if (optional_cstring(hostname, "hostname", &p->hostname) < 0 ||
        optional_cstring(rootfs, "rootfs", &p->rootfs) < 0 ||
        optional_cstring(cwd, "cwd", &p->cwd) < 0 ||
        optional_cstring(name, "process_name", &p->name) < 0)
        return -1;
    if (p->cwd == NULL)
        p->cwd = "/";
    if (p->name == NULL)
        p->name = "boxd:[init]";
    if (attach != NULL) {
        p->attach = string_array(attach, "an attach point", &p->nattach);
        if (p->attach == NULL)
            return -1;
        if (p->nattach > MAX_ATTACH) {
            PyErr_Format(PyExc_ValueError, "at most %d attach points, not %zd", MAX_ATTACH,
                         p->nattach);
            return -1;
        }
    }
    if (mounts && PyTuple_Size(mounts) > 0 && p->rootfs == NULL) {
        PyErr_SetString(PyExc_ValueError, "a mount table needs a rootfs to resolve it in");
        return -1;
    }
    if ((mounts && parse_mounts(mounts, p) < 0) || (groups && parse_groups(groups, p) < 0) ||
        (rlimits && parse_rlimits(rlimits, p) < 0) || (ns_fds && parse_ns_fds(ns_fds, p) < 0) ||
        (cgroup_tasks && parse_fd_tuple(cgroup_tasks, p->cgroup_tasks, &p->ntasks,
                                         MAX_CGROUP_TASKS, 0, "cgroup tasks fds") < 0) ||
        (mount_fds && parse_fd_tuple(mount_fds, p->mount_fds, &p->nmount_fds, MAX_MOUNT_FDS,
                                      3, "mount fds") < 0) ||
        (links && parse_links(links, p) < 0) ||
        /* b"": no default route */
        (gateway_size > 0 && ipv4(gateway, gateway_size, "gateway", &p->gateway) < 0) ||
        parse_caps(caps, p) < 0 ||
        parse_seccomp(seccomp, p) < 0)
        return -1;
    if (p->sysinfo && (p->nfilter == 0 || p->start_fd >= 0)) {
        PyErr_SetString(PyExc_ValueError,
                        "sysinfo needs a seccomp program, and goes with no start_fd");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ shared memory
 *
 * The container's process and a shim's intermediate share our memory until they exec
 * (CLONE_VM, child.c's clone_on_stack): no copy of the interpreter's page tables on the
 * event loop's thread, and no copy-on-write faults after it.  What they read and the
 * stacks they run on are therefore in a mapping of their own (struct shared), which
 * Python never touches: the plan is copied into it out of the Python objects (which may
 * be freed as soon as spawn() returns), and it is unmapped only once each child has
 * exec'd or exited, or was never made (in_use_by_children).  Mappings still in
 * use wait on a list, looked at by every spawn.  Should this process exit first, the
 * mapping stays with the children (they hold the memory). */
#define CHILD_STACK (64 * 1024)

struct shared {
    struct shared *next;
    char *map;
    size_t size;
    /* [0]: the container's process or an intermediate (shim or join mode); [1]: the
     * process that intermediate clones */
    struct vm_stack stacks[2];
    struct plan plan;
};

static struct shared *in_use;

/* Copies into the mapping, or (base NULL) only their size. */
struct bump {
    char *base;
    size_t used;
};

static void *put(struct bump *b, const void *src, size_t n)
{
    size_t at = (b->used + 15) & ~(size_t)15;
    b->used = at + n;
    if (b->base == NULL)
        return NULL;
    if (n > 0)
        memcpy(b->base + at, src, n);
    return b->base + at;
}

static const char *put_string(struct bump *b, const char *s)
{
    return s == NULL ? NULL : put(b, s, strlen(s) + 1);
}

/* A NULL-terminated array of n strings; NULL stays NULL. */
static const char **put_strings(struct bump *b, const char *const *v, size_t n)
{
    if (v == NULL)
        return NULL;
    const char **out = put(b, v, (n + 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        const char *s = put_string(b, v[i]);
        if (out != NULL)
            out[i] = s;
    }
    return out;
}

static size_t count(char *const *v)
{
    size_t n = 0;
    while (v != NULL && v[n] != NULL)
        n++;
    return n;
}

/* *d = a copy of *s whose arrays and strings are in b (d unused while only counting). */
static void copy_plan(struct plan *d, const struct plan *s, struct bump *b)
{
    *d = *s;
    d->argv = (char **)put_strings(b, (const char *const *)s->argv, count(s->argv));
    d->envp = (char **)put_strings(b, (const char *const *)s->envp, count(s->envp));
    d->shim_argv =
        (char **)put_strings(b, (const char *const *)s->shim_argv, count(s->shim_argv));
    d->search = put_strings(b, s->search, s->nsearch);
    d->attach = put_strings(b, s->attach, s->nattach);
    d->hostname = put_string(b, s->hostname);
    d->rootfs = put_string(b, s->rootfs);
    d->cwd = put_string(b, s->cwd);
    d->name = put_string(b, s->name);
    d->shim_path = put_string(b, s->shim_path);
    d->shim_dir = put_string(b, s->shim_dir);
    d->groups = put(b, s->groups, s->ngroups * sizeof *s->groups);
    d->rlimits = put(b, s->rlimits, s->nrlimits * sizeof *s->rlimits);
    d->filter = put(b, s->filter, s->nfilter * sizeof *s->filter);
    struct mount_op *mounts = put(b, s->mounts, s->nmounts * sizeof *s->mounts);
    d->mounts = mounts;
    for (size_t i = 0; i < s->nmounts; i++) {
        const char *target = put_string(b, s->mounts[i].target);
        const char *source = put_string(b, s->mounts[i].source);
        const char *fstype = put_string(b, s->mounts[i].fstype);
        const char *data = put_string(b, s->mounts[i].data);
        if (mounts != NULL) {
            mounts[i].target = target;
            mounts[i].source = source;
            mounts[i].fstype = fstype;
            mounts[i].data = data;
        }
    }
    d->container_stack = NULL;
}

/* Whether a mapping's children may still run in it.  Stack 0's child is ours: once our
 * clone returned, it holds `alive` until it leaves our memory (or the failed clone cleared
 * it).  Stack 1's is cloned by stack 0's (a shim's or join mode's intermediate), which a
 * start's cancellation may kill in that clone, leaving `alive` set with no child: once
 * the intermediate has left our memory, a `tid` still 0 says no child was made. */
static int in_use_by_children(const struct shared *sh)
{
    if (__atomic_load_n(&sh->stacks[0].alive, __ATOMIC_SEQ_CST))
        return 1;
    return __atomic_load_n(&sh->stacks[1].alive, __ATOMIC_SEQ_CST) &&
           __atomic_load_n(&sh->stacks[1].tid, __ATOMIC_SEQ_CST) != 0;
}

/* Unmap what no child uses any more. */
static void release_unused(void)
{
    for (struct shared **at = &in_use; *at != NULL;) {
        struct shared *sh = *at;
        if (in_use_by_children(sh)) {
            at = &sh->next;
            continue;
        }
        *at = sh->next;
        munmap(sh->map, sh->size);
    }
}

/* The mapping for plan p: two stacks, each above a guard page, then the struct shared and
 * the copy of the plan.  NULL with an exception set. */
static struct shared *share(const struct plan *p)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    struct plan scratch;
    struct bump counter = {NULL, sizeof(struct shared)};
    copy_plan(&scratch, p, &counter);
    size_t stack = (CHILD_STACK + page - 1) / page * page;
    size_t rest = (counter.used + page - 1) / page * page;
    size_t size = 2 * (page + stack) + rest;
    char *map = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    if (mprotect(map, page, PROT_NONE) < 0 ||
        mprotect(map + page + stack, page, PROT_NONE) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        munmap(map, size);
        return NULL;
    }
    struct shared *sh = (struct shared *)(map + 2 * (page + stack));
    sh->next = NULL;
    sh->map = map;
    sh->size = size;
    for (int i = 0; i < 2; i++) {
        sh->stacks[i].base = map + page + (size_t)i * (page + stack);
        sh->stacks[i].size = stack;
        sh->stacks[i].alive = 0;
        sh->stacks[i].tid = 0;
    }
    struct bump into = {(char *)sh, sizeof(struct shared)};
    copy_plan(&sh->plan, p, &into);
    return sh;
}

static void close_quietly(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* A pid namespace among ns_fds (the daemon's --pid container:NAME): setns(CLONE_NEWPID)
 * places only the caller's later children in it, so this thread enters it for the clone
 * and goes back after (leave_pid_ns); with a shim, the shim's intermediate enters it
 * instead (child.c: the shim stays in ours).  The fd of the thread's own, -1 without one,
 * or -2 with an error set.  (The child's own setns of it, child.c, then changes nothing.) */
static int enter_pid_ns(const struct plan *p)
{
    for (size_t i = 0; i < p->nns; i++) {
        if (p->ns_types[i] != CLONE_NEWPID)
            continue;
        int own = open("/proc/thread-self/ns/pid", O_RDONLY | O_CLOEXEC);
        if (own < 0 || setns(p->ns_fds[i], CLONE_NEWPID) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            close_quietly(own);
            return -2;
        }
        return own;
    }
    return -1;
}

static void leave_pid_ns(int own)
{
    /* A thread left there would put its next children in another container's pid
     * namespace: not a state to go on from (and entering one's own active pid namespace
     * cannot fail where entering a child of it just worked). */
    if (setns(own, CLONE_NEWPID) < 0)
        Py_FatalError("sandbox_native: cannot return to the thread's own pid namespace");
    close(own);
}

static PyObject *spawn(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    struct plan p;
    struct shared *sh = NULL;
    int sv[2] = {-1, -1}, report[2] = {-1, -1}, pidfd = -1, shim_pidfd = -1;
    PyObject *result = NULL;
    release_unused();
    memset(&p, 0, sizeof p);
    if (parse_plan(args, kwargs, &p) < 0)
        goto out;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto out;
    }
    p.sync_fd = sv[1];
    if (p.shim_path != NULL) {
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, report) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto out;
        }
        p.report_fd = report[1];
    } else if (p.join_pidfd >= 0) {
        if (pipe2(report, O_CLOEXEC) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto out;
        }
        p.report_fd = report[1];
    }
    sh = share(&p);
    if (sh == NULL)
        goto out;
    /* The children that share our memory could be read through /proc or ptrace by
     * whoever may do so to them (after their identity change: the container's user) as
     * long as this process is dumpable; the kernel would make it non-dumpable anyway at
     * their first change of identity.  (Join mode's intermediate, where it is a copy,
     * does the same for itself.) */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto out;
    }
    struct clone_args_v2 clone;
    memset(&clone, 0, sizeof clone);
    clone.exit_signal = SIGCHLD;
    /* The process that becomes the container's (or exec's, through join mode's
     * intermediate) is born in its v2 cgroup; a shim's intermediate clones the container
     * into it itself (the shim stays in ours). */
    if (p.cgroup_dir >= 0 && p.shim_path == NULL) {
        clone.flags |= CLONE_INTO_CGROUP;
        clone.cgroup = (uint64_t)p.cgroup_dir;
    }
    long pid;
    if (p.shim_path != NULL) {
        clone.flags |= CLONE_PIDFD;
        clone.pidfd = (uint64_t)(uintptr_t)&shim_pidfd;
        sh->plan.container_stack = &sh->stacks[1];
        pid = spawn_clone(&clone, &sh->stacks[0], &sh->plan, shim_main);
    } else if (p.join_pidfd >= 0) {
        clone.flags |= CLONE_PIDFD;
        clone.pidfd = (uint64_t)(uintptr_t)&pidfd;
        /* Sharing our memory (no copy of the daemon's page tables, on this thread and
         * again for the final process) unless it joins a user namespace (child.c). */
        struct vm_stack *stack = NULL;
        if (!(p.join_flags & CLONE_NEWUSER)) {
            stack = &sh->stacks[0];
            sh->plan.container_stack = &sh->stacks[1];
        }
        pid = spawn_clone(&clone, stack, &sh->plan, intermediate_main);
    } else {
        clone.flags |= CLONE_PIDFD | (p.clone_flags & ~unshared_by_child(&p));
        clone.pidfd = (uint64_t)(uintptr_t)&pidfd;
        int own_pidns = enter_pid_ns(&p);
        if (own_pidns == -2)
            goto out;
        pid = spawn_clone(&clone, &sh->stacks[0], &sh->plan, child_main);
        if (own_pidns >= 0)
            leave_pid_ns(own_pidns);
    }
    close_quietly(report[1]);
    report[1] = -1;
    close_quietly(sv[1]);
    sv[1] = -1;
    if (pid < 0) {
        errno = (int)-pid;
        PyErr_SetFromErrno(PyExc_OSError);
        goto out;
    }
    /* With a shim or in join mode, the caller reads the intermediate's report on
     * report[0] in its event loop, not here (boxd/_native.py's start): a shim's STARTED
     * message with the container's pid and pidfd, then end of file once it runs boxd-shim;
     * join mode's final pid, then the intermediate's exit (pid and pidfd are the
     * intermediate's). */
    int report_fd = report[0];
    result = Py_BuildValue("(liiii)", pid, pidfd, sv[0], shim_pidfd, report_fd);
    if (result == NULL) {
        /* Only memory can fail here; the child then reads EOF on its sync socket (a shim's
         * intermediate, its report socket closed, ends without running the shim). */
        close_quietly(pidfd);
        close_quietly(shim_pidfd);
        goto out;
    }
    sv[0] = -1;
    report[0] = -1;
out:
    close_quietly(sv[0]);
    close_quietly(sv[1]);
    close_quietly(report[0]);
    close_quietly(report[1]);
    free_plan(&p);
    if (sh != NULL) {
        sh->next = in_use;
        in_use = sh;
        release_unused();
    }
    return result;
}

/* Unmap the mappings of children that have exec'd or exited now rather than at the next
 * spawn: after twenty starts at once, twenty of them (~0.5 MB) waited for it.  Called
 * with the GIL held, as spawn touches the list. */
static PyObject *release_stacks(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    release_unused();
    Py_RETURN_NONE;
}

/* Parent side: a detached copy of the mount at `path`, id-mapped through the user namespace
 * `userns_fd` (so that files the host's ids own show up as the namespace's). */
static PyObject *idmapped_tree(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *path;
    int userns_fd;
    if (!PyArg_ParseTuple(args, "O&i:idmapped_tree", PyUnicode_FSConverter, &path, &userns_fd))
        return NULL;
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, PyBytes_AsString(path),
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (fd < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
        Py_DECREF(path);
        return NULL;
    }
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_IDMAP;
    attr.userns_fd = (uint64_t)userns_fd;
    if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
        close(fd);
        Py_DECREF(path);
        return NULL;
    }
    Py_DECREF(path);
    return PyLong_FromLong(fd);
}

/* In the mount namespace of nsfd, by tree_clone's child (this process has threads, which
 * setns(CLONE_NEWNS) refuses): the fd of the copy, or -1 with errno.  The child shares the
 * fd table: the pipe's write end is closed once it has ended, not before. */
static int tree_in(int nsfd, const char *name, unsigned int flags)
{
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0)
        return -1;
    long pid = tree_clone(nsfd, name, flags, report[1]);
    int record[2] = {-1, errno};
    if (pid >= 0)
        while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR)
            ;
    close(report[1]);
    if (pid >= 0 && read(report[0], record, sizeof record) != (ssize_t)sizeof record)
        record[0] = -1, record[1] = EIO;
    close(report[0]);
    errno = record[1];
    return record[0];
}

/* Parent side: a detached copy of the mount at `path` (a file or a directory), with the
 * mounts below it if `recursive` (an rbind's); with `nsfd` (a namespace file or pidfd),
 * the mount at `path` in that mount namespace. */
static PyObject *clone_tree(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *path;
    int recursive = 0, nsfd = -1;
    if (!PyArg_ParseTuple(args, "O&|pi:clone_tree", PyUnicode_FSConverter, &path, &recursive,
                          &nsfd))
        return NULL;
    const char *name = PyBytes_AsString(path);
    unsigned int flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0);
    int fd;
    /* Without the GIL: on a FUSE mount the lookup waits for its server, which may be
     * this very process (boxd's /proc view). */
    Py_BEGIN_ALLOW_THREADS
    if (nsfd >= 0)
        fd = tree_in(nsfd, name, flags);
    else
        fd = (int)syscall(SYS_open_tree, AT_FDCWD, name, flags);
    Py_END_ALLOW_THREADS
    if (fd < 0)
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
    Py_DECREF(path);
    return fd < 0 ? NULL : PyLong_FromLong(fd);
}

/* rebind(pidfd, ((tree_fd, target), ...)): replace mounts inside a running container (the
 * /proc view's files of an adopted container, whose old ones lead to a dead FUSE server). */
static PyObject *rebind(PyObject *self, PyObject *args)
{
    (void)self;
    int pidfd, trees[MAX_ATTACH], report[2];
    const char *targets[MAX_ATTACH];
    PyObject *pairs;
    if (!PyArg_ParseTuple(args, "iO!:rebind", &pidfd, &PyTuple_Type, &pairs))
        return NULL;
    Py_ssize_t n = PyTuple_Size(pairs);
    if (n > MAX_ATTACH) {
        PyErr_Format(PyExc_ValueError, "at most %d mounts to rebind, not %zd", MAX_ATTACH, n);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *target;
        if (!PyArg_ParseTuple(PyTuple_GetItem(pairs, i), "iS;a rebind is (tree_fd, target)",
                              &trees[i], &target))
            return NULL;
        targets[i] = cstring(target, "a rebind target");
        if (targets[i] == NULL)
            return NULL;
    }
    if (pipe2(report, O_CLOEXEC) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    long pid = rebind_clone(pidfd, (size_t)n, trees, targets, report[1]);
    int saved = errno;
    close(report[1]);
    if (pid < 0) {
        close(report[0]);
        errno = saved;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    int record[2] = {0, 0};
    ssize_t got;
    Py_BEGIN_ALLOW_THREADS
    do {
        got = read(report[0], record, sizeof record);
    } while (got < 0 && errno == EINTR);
    while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR)
        ;
    Py_END_ALLOW_THREADS
    close(report[0]);
    if (got == 0)
        Py_RETURN_NONE;
    if (got != (ssize_t)sizeof record) {
        PyErr_SetString(PyExc_RuntimeError, "rebind: the child ended without a report");
        return NULL;
    }
    errno = record[1];
    if (record[0] < 0 || record[0] >= n) /* setns */
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyErr_SetFromErrnoWithFilename(PyExc_OSError, targets[record[0]]);
}

/* tee(fd_in, fd_out, size) -> int: tee(2) without blocking, for the output pump that
 * copies a chunk out of a pipe before taking it (boxd/_ledger.py).  Python's os module has
 * splice but no tee.  Without the GIL: SPLICE_F_NONBLOCK does not keep tee from waiting
 * for a pipe's lock, which a writer holds while it splices a file into the pipe (busybox's
 * cat with sendfile), and a file of the daemon's /proc view is read by the view's own
 * thread, which needs the GIL (boxd/_procview.py). */
static PyObject *tee_pipe(PyObject *self, PyObject *args)
{
    (void)self;
    int fd_in, fd_out;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "iin:tee", &fd_in, &fd_out, &size))
        return NULL;
    if (size < 0) {
        PyErr_Format(PyExc_ValueError, "tee: negative size %zd", size);
        return NULL;
    }
    ssize_t copied;
    Py_BEGIN_ALLOW_THREADS
    copied = tee(fd_in, fd_out, (size_t)size, SPLICE_F_NONBLOCK);
    Py_END_ALLOW_THREADS
    if (copied < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromSsize_t(copied);
}

static PyMethodDef methods[] = {
    {"spawn", (PyCFunction)(void (*)(void))spawn, METH_VARARGS | METH_KEYWORDS,
     "spawn(*, argv, env, search_path, clone_flags, hostname, rootfs, mounts, cwd, uid, gid,\n"
     "      groups, stdio, console, rlimits, caps, no_new_privs, seccomp,\n"
     "      join_pidfd, join_flags, process_name, attach, start_fd, keep_fds, shim_path,\n"
     "      shim_dir, shim_argv, ns_fds, cgroup_tasks, cgroup_dir, links, gateway,\n"
     "      die_with_caller, console_size, mount_fds, umask, sysinfo)\n"
     "      -> (pid, pidfd, sync_fd, shim_pidfd, report_fd)\n\n"
     "Fork the child a SpawnPlan describes; see boxd/_native.py for the fields."},
    {"release_stacks", release_stacks, METH_NOARGS,
     "release_stacks() -> None\n\n"
     "Unmap the stacks and plan copies of the children that have exec'd or exited (spawn\n"
     "also does it, as it starts and ends)."},
    {"idmapped_tree", idmapped_tree, METH_VARARGS,
     "idmapped_tree(path, userns_fd) -> fd\n\n"
     "A detached, id-mapped copy of the mount tree at path (open_tree + mount_setattr)."},
    {"clone_tree", clone_tree, METH_VARARGS,
     "clone_tree(path, recursive=False, nsfd=-1) -> fd\n\nA detached copy of the mount at "
     "path (open_tree), with the mounts below it if recursive; with nsfd (a namespace file\n"
     "or pidfd), of the mount at path in that mount namespace."},
    {"rebind", rebind, METH_VARARGS,
     "rebind(pidfd, ((tree_fd, target), ...)) -> None\n\n"
     "In the mount namespace of the process behind pidfd, detach what is mounted at each\n"
     "target and attach the detached tree there instead."},
    {"gather_read", gather_read, METH_VARARGS,
     "gather_read(fd, buffer, gap, limit, group=-1, home=-1) -> (size, ended, stayed)\n\n"
     "Read the non-blocking fd into buffer without the GIL until it is full, the writer\n"
     "pauses for gap seconds or limit seconds passed; ended at end of file or EIO.  With\n"
     "group and home (open v1 cgroup tasks files), the thread reads in group's cgroup and\n"
     "goes back to home's before it takes the GIL; stayed: it could not (see\n"
     "sandbox_native/gather.c)."},
    {"tee", tee_pipe, METH_VARARGS,
     "tee(fd_in, fd_out, size) -> int\n\n"
     "Copy up to size bytes from the pipe fd_in to the pipe fd_out without taking them\n"
     "from fd_in (tee(2) with SPLICE_F_NONBLOCK); 0 at the end of fd_in's output."},
    {"remove_tree", remove_tree, METH_VARARGS,
     "remove_tree(path) -> None\n\n"
     "Delete path and everything below it without the GIL, never following a symbolic\n"
     "link nor entering another file system; OSError (the first failure's errno) if\n"
     "anything is left (see sandbox_native/tree.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "sandbox_native",
    "The fork-to-exec path of boxd: namespaces, mounts, pivot_root, identity, exec.", -1,
    methods, NULL, NULL, NULL, NULL,
};

/* module.<attr> = {name: value} of one of spawn.h's enums; 0 on success. */
static int add_table(PyObject *module, const char *attr, const char *const *names,
                     const int *values, size_t n)
{
    PyObject *table = PyDict_New();
    if (table == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        PyObject *value = PyLong_FromLong(values[i]);
        if (value == NULL || PyDict_SetItemString(table, names[i], value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(table);
            return -1;
        }
        Py_DECREF(value);
    }
    int rc = PyModule_AddObjectRef(module, attr, table);
    Py_DECREF(table);
    return rc;
}

#define NAME(name, value) #name,
#define VALUE(name, value) value,
static const char *const stage_names[] = {SPAWN_STAGES(NAME)};
static const int stage_values[] = {SPAWN_STAGES(VALUE)};
static const char *const mount_kind_names[] = {SPAWN_MOUNT_KINDS(NAME)};
static const int mount_kind_values[] = {SPAWN_MOUNT_KINDS(VALUE)};
static const char *const message_names[] = {SPAWN_MESSAGES(NAME)};
static const int message_values[] = {SPAWN_MESSAGES(VALUE)};
#undef NAME
#undef VALUE
#define TABLE(module, attr, prefix)                                                            \
    add_table(module, attr, prefix##_names, prefix##_values,                                   \
              sizeof prefix##_values / sizeof prefix##_values[0])

PyMODINIT_FUNC PyInit_sandbox_native(void)
{
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (TABLE(module, "STAGES", stage) < 0 || TABLE(module, "MOUNT_KINDS", mount_kind) < 0 ||
        TABLE(module, "MESSAGES", message) < 0 ||
        PyModule_AddIntConstant(module, "SYNC_MSG_SIZE", (long)sizeof(struct sync_msg)) < 0 ||
        PyModule_AddIntConstant(module, "MAX_MOUNT_FDS", MAX_MOUNT_FDS) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
