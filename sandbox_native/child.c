/*
 * The child side of sandbox_native: everything between clone and exec of a container's
 * process (and of exec's and the shim's intermediates).  This file does not include
 * Python.h: the plan arrives converted into C memory (struct plan, spawn.h) by the glue in
 * sandbox_native.c.  The container's process and the shim's intermediate share the
 * caller's memory until they exec (CLONE_VM, see clone_on_stack), so the child makes raw
 * system calls only (RAW: no errno, no glibc wrapper, no malloc, no Python API): it must
 * write nothing but its own stack, and no lock another thread of the caller holds may
 * matter to it.  Identity changes (setgroups, setresgid, setresuid) are raw calls for a
 * second reason: glibc's wrappers broadcast them to every thread glibc believes exists.
 *
 * The child's steps, in order (on failure it sends a FAILED message, spawn.h, and exits):
 *   0. join its v1 cgroups by writing "0" to each hierarchy's `tasks` (a process that
 *      moves itself skips the global lock a move of another pid takes, which waits for an
 *      RCU grace period: milliseconds); its v2 cgroup it was born in (CLONE_INTO_CGROUP).
 *      Then narrow its CPU affinity to the CPUs but its caller's (see the CPUs of the
 *      set-up, below) and close the fds it inherited and does not need (close_all_but)
 *   1. signals to SIG_DFL, mask cleared, comm named, not dumpable, setsid()
 *   2. wait for RELEASE on the sync socket (EOF: the parent gave up), which carries the
 *      detached id-mapped layer trees of a user-namespaced container; in a new user
 *      namespace become its root; then unshare the cgroup namespace (see below), a
 *      network namespace the parent moves no interface into and, in a new user namespace,
 *      the IPC one (unshared_by_child, spawn.h)
 *   3. stdio                              4. hostname, loopback up
 *   5. the umask; mounts (after making / a recursive slave): the id-mapped trees onto
 *      their attach points, then the mount table, each target resolved inside the root
 *      (see below)
 *   6. pivot_root(".", "."), old root detached; with a console, the
 *      terminal from the container's devpts (its master sent to the parent), bound at
 *      /dev/console by a container's first process; with links,
 *      wait for LINKED (the parent makes the interfaces while steps 3-6 run), then give
 *      them their addresses, bring them up, add the default route
 *   7. rlimits, while still privileged (raising a hard limit needs CAP_SYS_RESOURCE);
 *      the CPU affinity reset to every CPU (its cpuset's)
 *   8. close every fd but 0, 1, 2 and the sync socket (which is close-on-exec)
 *   9. seccomp if no_new_privs is off: loading a filter then needs CAP_SYS_ADMIN, which
 *      the next step may drop, so the filter must allow the remaining steps' calls
 *      (setgroups, setres[ug]id, capset, prctl, chdir, write, execve, exit_group); with
 *      `sysinfo`, the sysinfo filter first, its listener sent to the parent (see
 *      load_sysinfo_filter)
 *  10. bounding set, setgroups, setresgid, setresuid (keeping caps), capset, ambient set
 *  11. no_new_privs, chdir(cwd) as the final user
 *  12. with die_with_caller, SIGKILL once the caller is gone (see die_with_caller)
 *      with start_fd (the OCI runtime's create/start split): report "waiting" to the
 *      parent, then block in accept() on start_fd until `start` connects; that connection
 *      becomes the sync socket (see wait_for_start)
 *  13. seccomp if no_new_privs is on (as late as possible; the sysinfo filter first, as
 *      in step 9), then execve
 *
 * ns_fds (fd, CLONE_NEW* type) pairs: namespaces the child joins with setns() right after
 * its release, instead of making new ones (the OCI runtime's namespace paths: a pod's
 * containers share its network, IPC and UTS namespaces).
 *
 * keep_fds n keeps the caller's fds 3 .. 3+n-1 open at the same numbers (the OCI
 * runtime's --preserve-fds); every other fd is closed as above.
 *
 * The cgroup namespace is not created by clone3: its root would then be the cgroups the
 * child was born in, not all of the container's (the v1 ones it joins in step 0).  The
 * child unshares it right after the parent released it instead.
 *
 * Join mode (join_pidfd >= 0): an intermediate child calls setns(pidfd, flags), then
 * clones the final process with CLONE_PARENT (so it is the caller's child and, having
 * been created after the setns, lives in the target's pid namespace), reports its pid on
 * a pipe and exits.  The intermediate is the one placed in the container's cgroups (born
 * in the v2 one, joining the v1 ones first thing), so the final process is born in them.
 * The caller reads that pid, reaps the intermediate and opens a pidfd for the final
 * process (boxd/_native.py).  The final process skips namespaces, hostname, mounts and
 * pivot: setns
 * into a mount namespace already moves root and cwd to the root of that namespace as
 * its processes see it (the pivoted root), which the tests check.
 *
 * Shim mode (shim_path set: live restore): an intermediate child clones the container
 * (the steps above), so that the container is its child, makes the listening socket
 * "shim.sock" in shim_dir, sends the container's pid and pidfd on a report socket
 * (STARTED) and execs boxd-shim (shim.c), which reaps the container and outlives the
 * daemon.  spawn() returns at once, with a pidfd of the intermediate (the shim to be) and
 * the report socket; the caller waits in its event loop for STARTED and then end-of-file
 * (the exec happened), or a FAILED record (boxd/_native.py), and reaps the shim after it
 * has said DONE to it.
 * A pid namespace among ns_fds is entered by the intermediate before it clones the
 * container (without a shim, the caller's thread does it, sandbox_native.c): the
 * container is born in it, the shim is not.
 *
 * rebind() replaces mounts inside a running container (the /proc view's files after a
 * daemon restart): a child joins its mount namespace and move_mount()s detached trees.
 * tree_clone() is the other way round: a child joins a container's mount namespace and
 * makes a detached copy of one of its mounts there (--ipc container:NAME's /dev/shm).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "spawn.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* How often openat2 is tried again on EAGAIN (as boxd/_inroot.py's OPEN_TRIES). */
#define OPEN_TRIES 64

/* ---- raw system calls
 *
 * A child that shares the parent's memory (CLONE_VM, see spawn_clone) also shares the
 * thread-local storage of the parent's thread, which goes on running Python: glibc's
 * wrappers would write a failure's errno there (and their cancellation bookkeeping, the
 * parent being threaded).  So the child makes every call with RAW: the result, or -errno,
 * and nothing else written anywhere.  The only library functions it calls are memcpy,
 * memset, strlen, strchr and strrchr. */
static inline long raw_syscall(long n, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc #0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
#else
#error "sandbox_native: raw system calls are written for x86_64 and aarch64 only"
#endif
}

#define RAW(...) RAW_(__VA_ARGS__, 0, 0, 0, 0, 0, 0, 0)
#define RAW_(name, a, b, c, d, e, f, ...)                                                      \
    raw_syscall(SYS_##name, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

__attribute__((noreturn)) static void leave(int code)
{
    for (;;)
        RAW(exit_group, code);
}

/* One message to the parent, with one fd (SCM_RIGHTS) unless `fd` is -1; -errno. */
static long send_msg(int sock, const struct sync_msg *m, int fd)
{
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof *m};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    memset(&control, 0, sizeof control);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    long n;
    do {
        n = RAW(sendmsg, sock, &msg, MSG_NOSIGNAL);
    } while (n == -EINTR);
    return n;
}

__attribute__((noreturn)) static void fail(const struct plan *p, int stage, int err, int index)
{
    struct sync_msg m = {.kind = MSG_FAILED, .stage = stage, .err = err, .value = index};
    send_msg(p->sync_fd, &m, -1);
    leave(127);
}

/* expr is a raw call's result (or a helper's, the same way): below 0 is -errno. */
#define CHECK(p, expr, stage, index)                                                           \
    do {                                                                                       \
        long check_ = (expr);                                                                  \
        if (check_ < 0)                                                                        \
            fail((p), (stage), (int)-check_, (index));                                         \
    } while (0)

/* The kernel's struct sigaction (x86_64 and aarch64 alike). */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

static void reset_signals(const struct plan *p)
{
    struct kernel_sigaction dfl;
    memset(&dfl, 0, sizeof dfl); /* SIG_DFL */
    for (int sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            CHECK(p, RAW(rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask), STAGE_SIGNALS, sig);
    uint64_t none = 0;
    CHECK(p, RAW(rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none), STAGE_SIGNALS, 0);
    CHECK(p, RAW(prctl, PR_SET_NAME, p->name, 0, 0, 0), STAGE_SIGNALS, 0);
    CHECK(p, RAW(prctl, PR_SET_DUMPABLE, 0, 0, 0, 0), STAGE_SIGNALS, 0);
    CHECK(p, RAW(setsid), STAGE_SETSID, 0);
}

/* Close every fd but those below `floor` and the few listed (lower entries are ignored):
 * the copies of the parent's fds this process got at the fork include the parent's end of our own sync socket and
 * those of siblings still waiting for their release.  Held here, they would keep
 * end-of-file from reaching us (and the siblings) if the parent died. */
static void close_all_but(const struct plan *p, int *keep, int n, int floor)
{
    for (int i = 1; i < n; i++) /* insertion sort: n is tiny */
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    unsigned int from = (unsigned int)floor;
    for (int i = 0; i <= n; i++) {
        unsigned int to = i < n ? (unsigned int)keep[i] : ~0U;
        if (i < n && keep[i] < floor)
            continue;
        if (to > from)
            CHECK(p, RAW(close_range, from, i < n ? to - 1 : to, 0), STAGE_CLOSE_FDS, 0);
        if (i < n)
            from = to + 1;
    }
}

/* A shim's intermediate keeps the cgroup fds for the container it clones. */
static void keep_only_what_the_child_needs(const struct plan *p, int intermediate)
{
    int keep[11 + MAX_CGROUP_TASKS + 1 + MAX_MOUNT_FDS] = {
        p->stdio[0], p->stdio[1], p->stdio[2], p->sync_fd, p->start_fd,
        intermediate ? p->join_pidfd : -1, intermediate ? p->report_fd : -1,
        p->ns_fds[0], p->ns_fds[1], p->ns_fds[2], p->ns_fds[3]};
    int n = 11;
    if (intermediate && p->shim_path != NULL) {
        for (size_t i = 0; i < p->ntasks; i++)
            keep[n++] = p->cgroup_tasks[i];
        keep[n++] = p->cgroup_dir;
    }
    for (size_t i = 0; i < p->nmount_fds; i++)
        keep[n++] = p->mount_fds[i];
    close_all_but(p, keep, n, 3 + p->keep_fds);
}

/* Step 0: into the container's v1 cgroups, "0" being this very process (single-threaded:
 * the whole process).  The parent opened each `tasks` file; the fds are closed after. */
static void join_cgroups(const struct plan *p)
{
    for (size_t i = 0; i < p->ntasks; i++) {
        long n;
        do {
            n = RAW(write, p->cgroup_tasks[i], "0", 1);
        } while (n == -EINTR);
        if (n != 1)
            fail(p, STAGE_CGROUP, n < 0 ? (int)-n : EIO, (int)i);
        RAW(close, p->cgroup_tasks[i]);
    }
}

/* ---- the CPUs of the set-up
 *
 * The set-up is a few milliseconds of system calls (mounts, namespaces), and the kernel
 * may preempt none of them (a kernel built with PREEMPT_NONE, as on the project's VM): on
 * the CPU of the caller's thread (an event loop that starts twenty containers at once),
 * the loop waits for each to end, whatever the priorities.  So the process first narrows
 * its CPU affinity to the CPUs it may use but the caller's (when any is left), and resets
 * it to every CPU before its fds are closed (step 8): an all-set mask, which the kernel
 * cuts to the cpuset of its cgroup, as runc and crun reset a container's affinity (so
 * that neither the set-up's narrowing nor an affinity the caller's thread had reaches
 * the container).  Both calls are allowed to any process on itself. */
#define AFFINITY_WORDS (1024 / (8 * sizeof(unsigned long)))

/* 1 if the affinity was narrowed (0: left as it was, e.g. a cpuset of the caller's CPU). */
static int set_up_off_the_callers_cpu(const struct plan *p)
{
    unsigned long mask[AFFINITY_WORDS];
    size_t bits = 8 * sizeof mask[0], word = (size_t)p->caller_cpu / bits;
    if (p->caller_cpu < 0 || word >= AFFINITY_WORDS)
        return 0;
    memset(mask, 0, sizeof mask);
    if (RAW(sched_getaffinity, 0, sizeof mask, mask) < 0)
        return 0;
    mask[word] &= ~(1UL << ((size_t)p->caller_cpu % bits));
    for (size_t i = 0; i < AFFINITY_WORDS; i++)
        if (mask[i] != 0)
            return RAW(sched_setaffinity, 0, sizeof mask, mask) == 0;
    return 0;
}

/* A failure matters only after a narrowing: the process must never run narrowed (one a
 * filter of the caller's keeps from both calls runs as it was cloned, as before). */
static void reset_affinity(const struct plan *p, int narrowed)
{
    unsigned long all[AFFINITY_WORDS];
    memset(all, 0xff, sizeof all);
    long rc = RAW(sched_setaffinity, 0, sizeof all, all);
    if (narrowed)
        CHECK(p, rc, STAGE_AFFINITY, 0);
}

/* The release: RELEASE, and with it one fd per attach point (detached mount trees). */
static void wait_for_parent(const struct plan *p, int trees[MAX_ATTACH])
{
    struct sync_msg release;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * MAX_ATTACH)];
    } control;
    struct iovec iov = {.iov_base = &release, .iov_len = sizeof release};
    struct msghdr msg;
    long n;
    do {
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        n = RAW(recvmsg, p->sync_fd, &msg, MSG_CMSG_CLOEXEC);
    } while (n == -EINTR);
    if (n == 0)
        leave(127); /* the parent gave up on us: nobody is left to read a record */
    CHECK(p, n, STAGE_SYNC, 0);
    if (n != (long)sizeof release || release.kind != MSG_RELEASE)
        fail(p, STAGE_SYNC, EBADMSG, -1);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    size_t got = 0;
    if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
        got = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    if (got != (size_t)p->nattach || (msg.msg_flags & MSG_CTRUNC))
        fail(p, STAGE_SYNC, EBADMSG, (int)got);
    if (got)
        memcpy(trees, CMSG_DATA(c), got * sizeof(int));
}

/* LINKED: the parent has put the interfaces of p->links into this network namespace. */
static void wait_for_links(const struct plan *p)
{
    struct sync_msg m;
    long n;
    do {
        n = RAW(recvfrom, p->sync_fd, &m, sizeof m, 0, NULL, NULL);
    } while (n == -EINTR);
    if (n == 0)
        leave(127); /* the parent gave up on us, as in wait_for_parent */
    CHECK(p, n, STAGE_SYNC, 0);
    if (n != (long)sizeof m || m.kind != MSG_LINKED)
        fail(p, STAGE_SYNC, EBADMSG, -1);
}

/* ---- the mount table, resolved inside the root
 *
 * Every target is a path inside the container.  The root's contents are untrusted (an
 * image, the upper layer a previous run of the container wrote, a volume another
 * container shares), so a target is never walked as a host path: openat2 with
 * RESOLVE_IN_ROOT resolves it with the container's root as "/", so ".." and absolute
 * symlinks stop at that root, and the step acts on the fd it got (through its
 * /proc/self/fd link, which names exactly that mount and dentry) or on the parent
 * directory's fd.  A step sees the mounts made before it: a lookup from the root's fd
 * enters every mount made below the root since, but not one made on the root's own
 * directory (the first step mounts the root overlay itself on the empty rootfs; a
 * read-only root is bound onto itself), so the root's fd is held across steps (struct
 * root) and opened again after a step that mounted on it.  Every helper below returns
 * -errno on failure. */

struct fd_link {
    char path[32];
};

static const char *fd_link(struct fd_link *l, int fd)
{
    static const char prefix[] = "/proc/self/fd/";
    char digits[12];
    int n = 0;
    unsigned int v = (unsigned int)fd;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(l->path, prefix, sizeof prefix - 1);
    for (int i = 0; i < n; i++)
        l->path[sizeof prefix - 1 + i] = digits[n - 1 - i];
    l->path[sizeof prefix - 1 + n] = '\0';
    return l->path;
}

/* The container's root for the mount table's lookups: opened at the first step that needs
 * it, then held (one open of the host path per table, not two calls more per step), with
 * its mount id and inode, by which a step that mounts on it is told (forget_if_root).
 * Opened again after a chdir step too (the rootfs path may be relative). */
struct root {
    int fd; /* -1: not open */
    int known; /* st holds the root's mount id and inode */
    struct statx st;
};

#define ROOT_IDENTITY (STATX_INO | STATX_MNT_ID)

static long root_fd(const struct plan *p, struct root *r)
{
    if (r->fd >= 0)
        return r->fd;
    long fd = RAW(openat, AT_FDCWD, p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fd;
    r->known = RAW(statx, fd, "", AT_EMPTY_PATH, ROOT_IDENTITY, &r->st) == 0 &&
               (r->st.stx_mask & ROOT_IDENTITY) == ROOT_IDENTITY;
    r->fd = (int)fd;
    return fd;
}

static void forget_root(struct root *r)
{
    if (r->fd >= 0)
        RAW(close, r->fd);
    r->fd = -1;
}

/* Before a step mounts on `fd` (a path opened inside the root): if that is the root's own
 * directory, the next step opens the root again, so that it starts on the new mount.
 * Unknown (a kernel without the mount id in statx): opened again after every such step.
 * Returns statx's result for `fd` in *st (with its type: what mask() needs), or -errno. */
static long forget_if_root(struct root *r, int fd, struct statx *st)
{
    long rc = RAW(statx, fd, "", AT_EMPTY_PATH, ROOT_IDENTITY | STATX_TYPE, st);
    if (rc == 0 && r->known && (st->stx_mask & ROOT_IDENTITY) == ROOT_IDENTITY &&
        (st->stx_mnt_id != r->st.stx_mnt_id || st->stx_ino != r->st.stx_ino ||
         st->stx_dev_major != r->st.stx_dev_major || st->stx_dev_minor != r->st.stx_dev_minor))
        return 0;
    forget_root(r);
    return rc;
}

/* Open container path `path` (absolute) inside the root. */
static int open_in_root(const struct plan *p, struct root *r, const char *path, int flags)
{
    int root = (int)root_fd(p, r);
    if (root < 0)
        return root;
    while (*path == '/')
        path++;
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    /* EAGAIN: a rename or mount anywhere raced with a ".." of the lookup (see OPEN_TRIES
     * in boxd/_inroot.py); tried again a bounded number of times. */
    int fd = -EAGAIN;
    for (int i = 0; i < OPEN_TRIES && (fd == -EAGAIN || fd == -EINTR); i++)
        fd = (int)RAW(openat2, root, *path ? path : ".", &how, sizeof how);
    return fd;
}

/* The parent directory of `path`, opened inside the root; its last component in *base. */
static int open_parent(const struct plan *p, struct root *r, const char *path,
                       char buf[PATH_MAX], const char **base)
{
    size_t len = strlen(path);
    if (len >= PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash == NULL || slash[1] == '\0')
        return -EINVAL; /* "/" or a relative path has no parent to create it in */
    *base = slash + 1;
    *slash = '\0';
    return open_in_root(p, r, buf[0] ? buf : "/", O_PATH | O_DIRECTORY);
}

/* The MS_* flags a read-only bind remount must repeat (locked in a user namespace). */
static unsigned long kept_flags(int fd)
{
    struct statfs st;
    if (RAW(fstatfs, fd, &st) < 0)
        return 0;
    return (unsigned long)st.f_flags &
           (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME);
}

/* Make the mount at the path read-only.  A plain directory or file (/proc/sys) is bound
 * onto itself first, to be a mount of its own (the remount then needs a new fd: the first
 * names the mount below the new bind); one that is a mount already (a volume's bind) is
 * remounted itself, not covered by a second mount (mountinfo showed two at a `ro`
 * volume's target, Docker's one).  With MS_REC in the op's flags (a volume's `ro`, as
 * Docker 25 makes it) the mounts below it too, where the kernel has mount_setattr (5.12);
 * before that, as Docker does there, the top one only. */
static long remount_read_only(const struct plan *p, struct root *r, const struct mount_op *op)
{
    struct fd_link l;
    int fd = open_in_root(p, r, op->target, O_PATH);
    if (fd < 0)
        return fd == -ENOENT ? 0 : fd; /* kernels differ in what /proc holds */
    struct statx st;
    memset(&st, 0, sizeof st);
    forget_if_root(r, fd, &st);
    long rc;
    if (!(st.stx_attributes_mask & st.stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
        rc = RAW(mount, fd_link(&l, fd), l.path, NULL, MS_BIND | MS_REC, NULL);
        RAW(close, fd);
        if (rc < 0)
            return rc;
        fd = open_in_root(p, r, op->target, O_PATH);
        if (fd < 0)
            return fd;
    }
    unsigned long flags = op->flags & ~(unsigned long)MS_REC;
    rc = RAW(mount, NULL, fd_link(&l, fd), NULL,
             MS_REMOUNT | MS_BIND | MS_RDONLY | flags | kept_flags(fd), NULL);
    if (rc == 0 && (op->flags & MS_REC)) {
        struct mount_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.attr_set = MOUNT_ATTR_RDONLY;
        rc = RAW(mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
        if (rc == -ENOSYS)
            rc = 0;
    }
    RAW(close, fd);
    return rc;
}

static long mask(const struct plan *p, struct root *r, const struct mount_op *op)
{
    struct fd_link l;
    struct statx st;
    int fd = open_in_root(p, r, op->target, O_PATH);
    if (fd < 0)
        return fd == -ENOENT ? 0 : fd;
    long rc = forget_if_root(r, fd, &st);
    if (rc == 0 && S_ISDIR(st.stx_mode))
        rc = RAW(mount, "tmpfs", fd_link(&l, fd), "tmpfs",
                 MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0");
    else if (rc == 0)
        rc = RAW(mount, "/dev/null", fd_link(&l, fd), NULL, MS_BIND, NULL);
    RAW(close, fd);
    return rc;
}

static long write_all(int fd, const char *data)
{
    size_t left = data == NULL ? 0 : strlen(data);
    while (left > 0) {
        long n = RAW(write, fd, data, left);
        if (n == -EINTR)
            continue;
        if (n < 0)
            return n;
        data += n;
        left -= (size_t)n;
    }
    return 0;
}

/* The steps that create something: in the parent directory's fd, never through a link. */
static long create_in_root(const struct plan *p, struct root *r, const struct mount_op *op)
{
    char buf[PATH_MAX];
    const char *base;
    struct fd_link l;
    long rc, fd, mask_was;
    int dir = open_parent(p, r, op->target, buf, &base);
    if (dir < 0)
        return dir;
    switch (op->kind) {
    case MK_MKDIR:
        rc = RAW(mkdirat, dir, base, op->mode);
        if (rc == -EEXIST)
            rc = 0;
        break;
    case MK_SYMLINK:
        rc = RAW(symlinkat, op->source, dir, base);
        if (rc == -EEXIST)
            rc = 0;
        break;
    case MK_MKNOD:
        /* Without the umask: the node must have exactly the mode asked (/dev/null is 0666
         * even under a daemon's umask 022). */
        mask_was = RAW(umask, 0);
        rc = RAW(mknodat, dir, base, op->mode, op->dev);
        RAW(umask, mask_was);
        /* flags: the host node's owner, uid | gid << 32 (a --device's, as Docker's). */
        if (rc == 0 && op->flags != 0)
            rc = RAW(fchownat, dir, base, op->flags & 0xffffffffUL, op->flags >> 32,
                     AT_SYMLINK_NOFOLLOW);
        break;
    case MK_WRITE_FILE:
        /* Always a new regular file: whatever the image has there (a device node, a FIFO,
         * a symlink) is unlinked first, never opened. */
        rc = RAW(unlinkat, dir, base, 0);
        if (rc < 0 && rc != -ENOENT)
            break;
        fd = RAW(openat, dir, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 op->mode);
        rc = fd < 0 ? fd : write_all((int)fd, op->data);
        if (fd >= 0)
            RAW(close, fd);
        break;
    case MK_MKFILE:
        /* A mount point for a file: made if nothing is there, never opened through a link. */
        fd = RAW(openat, dir, base, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 op->mode);
        rc = fd < 0 && fd != -EEXIST ? fd : 0;
        if (fd >= 0)
            RAW(close, fd);
        break;
    default: /* MK_BIND_DEV: a new empty file, then the host's device bound on it */
        fd = RAW(openat, dir, base, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        rc = fd < 0 ? fd
                    : RAW(mount, op->source, fd_link(&l, (int)fd), NULL, MS_BIND | op->flags,
                          NULL);
        if (fd >= 0)
            RAW(close, fd);
        break;
    }
    RAW(close, dir);
    return rc;
}

static long run_mount_op(const struct plan *p, struct root *r, const struct mount_op *op)
{
    struct fd_link l;
    struct statx st;
    int fd;
    long rc;
    switch (op->kind) {
    case MK_MOUNT:
        fd = open_in_root(p, r, op->target, O_PATH);
        if (fd < 0)
            return fd;
        forget_if_root(r, fd, &st);
        rc = RAW(mount, op->source, fd_link(&l, fd), op->fstype, op->flags, op->data);
        RAW(close, fd);
        return rc;
    case MK_MKDIR:
    case MK_SYMLINK:
    case MK_MKNOD:
    case MK_BIND_DEV:
    case MK_WRITE_FILE:
    case MK_MKFILE:
        return create_in_root(p, r, op);
    case MK_SYSCTL:
        fd = open_in_root(p, r, op->target, O_WRONLY | O_NOFOLLOW);
        if (fd < 0)
            return fd;
        rc = write_all(fd, op->data);
        RAW(close, fd);
        return rc;
    case MK_CHDIR:
        /* The host directory that relative overlay lowerdirs name (deep images). */
        forget_root(r);
        return RAW(chdir, op->source);
    case MK_ATTACH:
        /* A bind the parent made (a detached tree, fd in `dev`: one of mount_fds). */
        fd = open_in_root(p, r, op->target, O_PATH);
        if (fd < 0)
            return fd;
        forget_if_root(r, fd, &st);
        rc = RAW(move_mount, (int)op->dev, "", fd, "",
                 MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
        RAW(close, fd);
        RAW(close, (int)op->dev);
        return rc;
    case MK_REMOUNT_RO:
        return remount_read_only(p, r, op);
    case MK_MASK:
        return mask(p, r, op);
    default:
        return -EINVAL;
    }
}

/* A new network namespace starts with "lo" down; bring it up as Docker's --network none
 * does (a socket and two ioctls). */
static long loopback_up(void)
{
    struct ifreq ifr;
    long fd = RAW(socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    long rc = RAW(ioctl, fd, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = RAW(ioctl, fd, SIOCSIFFLAGS, &ifr);
    }
    RAW(close, fd);
    return rc;
}

static void set_inet(struct sockaddr *sa, uint32_t address)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = address;
    memcpy(sa, &sin, sizeof sin);
}

/* The container's interfaces (see struct link_config): address, netmask (none for an
 * address 0: an IPv6-only network's, which the parent gives) and up, then the default
 * route; ioctls on one socket, as loopback_up.  *index: the failing interface's (nlinks:
 * the route). */
static long links_up(const struct plan *p, int *index)
{
    long fd = RAW(socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    long rc = 0;
    for (size_t i = 0; i < p->nlinks && rc == 0; i++) {
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        memcpy(ifr.ifr_name, p->links[i].name, sizeof ifr.ifr_name);
        *index = (int)i;
        if (p->links[i].address != 0) {
            set_inet(&ifr.ifr_addr, p->links[i].address);
            rc = RAW(ioctl, fd, SIOCSIFADDR, &ifr);
        }
        if (rc == 0 && p->links[i].address != 0) {
            set_inet(&ifr.ifr_netmask, p->links[i].netmask);
            rc = RAW(ioctl, fd, SIOCSIFNETMASK, &ifr);
        }
        if (rc == 0)
            rc = RAW(ioctl, fd, SIOCGIFFLAGS, &ifr);
        if (rc == 0) {
            ifr.ifr_flags |= IFF_UP;
            rc = RAW(ioctl, fd, SIOCSIFFLAGS, &ifr);
        }
    }
    if (rc == 0 && p->gateway != 0) {
        struct rtentry rt;
        memset(&rt, 0, sizeof rt);
        set_inet(&rt.rt_dst, 0);
        set_inet(&rt.rt_genmask, 0);
        set_inet(&rt.rt_gateway, p->gateway);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        *index = (int)p->nlinks;
        rc = RAW(ioctl, fd, SIOCADDRT, &rt);
    }
    RAW(close, fd);
    return rc;
}

static void setup_mounts(const struct plan *p, const int trees[MAX_ATTACH])
{
    if (p->clone_flags & CLONE_NEWNS)
        CHECK(p, RAW(mount, NULL, "/", NULL, MS_REC | MS_SLAVE, NULL), STAGE_MOUNT, -1);
    /* The parent's detached trees, onto the host paths it chose (the overlays use them). */
    for (size_t i = 0; i < p->nattach; i++) {
        CHECK(p, RAW(move_mount, trees[i], "", AT_FDCWD, p->attach[i], MOVE_MOUNT_F_EMPTY_PATH),
              STAGE_ATTACH, (int)i);
        RAW(close, trees[i]);
    }
    struct root root = {.fd = -1, .known = 0};
    for (size_t i = 0; i < p->nmounts; i++)
        CHECK(p, run_mount_op(p, &root, &p->mounts[i]), STAGE_MOUNT, (int)i);
    forget_root(&root);
}

static void pivot(const struct plan *p)
{
    CHECK(p, RAW(chdir, p->rootfs), STAGE_PIVOT, 0);
    CHECK(p, RAW(pivot_root, ".", "."), STAGE_PIVOT, 0);
    /* The old root now sits on top of the new one at "/", and is detached.  A namespace
     * made here was made a recursive slave before its mounts (setup_mounts), so nothing
     * of this reaches the host; a joined one is made so now.  That step ("." names the
     * new root's tree, not the old root's: only umount2 goes up to the mount on top)
     * would also make slaves of the new root's mounts, which in a namespace of its own
     * are each as the plan made them: an [r]shared volume a peer of its source's. */
    if (!(p->clone_flags & CLONE_NEWNS))
        CHECK(p, RAW(mount, NULL, ".", NULL, MS_SLAVE | MS_REC, NULL), STAGE_PIVOT, 0);
    CHECK(p, RAW(umount2, ".", MNT_DETACH), STAGE_PIVOT, 0);
    CHECK(p, RAW(chdir, "/"), STAGE_PIVOT, 0);
}

/* dup2, as aarch64 has it (only dup3, which refuses equal fds). */
static long move_fd(int from, int to)
{
    return from == to ? to : RAW(dup3, from, to, 0);
}

/* The terminal bound at /dev/console too, as runc and podman bind it: getty-likes and init
 * systems open that.  Only by a container's first process, in a /dev of its own (a fresh
 * tmpfs; not exec's, which joins a running container's mounts).  The file bound onto is
 * made first; one already there (a user's mount) is bound over, as by runc. */
static void bind_console(const struct plan *p, int slave)
{
    long made = RAW(mknodat, AT_FDCWD, "/dev/console", S_IFREG | 0600, 0);
    if (made != -EEXIST)
        CHECK(p, made, STAGE_CONSOLE, 1);
    long tree = RAW(open_tree, slave, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    CHECK(p, tree, STAGE_CONSOLE, 2);
    CHECK(p, RAW(move_mount, (int)tree, "", AT_FDCWD, "/dev/console", MOVE_MOUNT_F_EMPTY_PATH),
          STAGE_CONSOLE, 3);
    RAW(close, tree);
}

/* The terminal, from the container's own devpts (so ttyname works inside and nothing of the
 * host's devpts is involved): opened once / is the container's, made stdin, stdout, stderr
 * and the controlling terminal of the new session; its master goes to the parent.  It is
 * given to the process's user (its group stays tty), as runc gives it: a user but root
 * could not open its own terminal by name (screen, gpg's pinentry, `exec 3<>$(tty)`). */
static void open_console(const struct plan *p)
{
    struct statfs fs;
    int unlock = 0;
    long master = RAW(openat, AT_FDCWD, "/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
    CHECK(p, master, STAGE_CONSOLE, 0);
    CHECK(p, RAW(fstatfs, master, &fs), STAGE_CONSOLE, 0);
    if (fs.f_type != DEVPTS_SUPER_MAGIC)
        fail(p, STAGE_CONSOLE, EXDEV, 0); /* /dev/pts is not a devpts mount */
    CHECK(p, RAW(ioctl, master, TIOCSPTLCK, &unlock), STAGE_CONSOLE, 0);
    long slave = RAW(ioctl, master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    CHECK(p, slave, STAGE_CONSOLE, 0);
    /* As runc, not where the user namespace maps no such user (setresuid then names the
     * failure) or not the terminal's owner (EPERM): the fds work without it. */
    long given = RAW(fchown, slave, p->uid, -1);
    if (given != -EINVAL && given != -EPERM)
        CHECK(p, given, STAGE_CONSOLE, 0);
    struct winsize size = {.ws_row = p->console_rows, .ws_col = p->console_cols};
    CHECK(p, RAW(ioctl, slave, TIOCSWINSZ, &size), STAGE_CONSOLE, 0);
    if (p->rootfs != NULL && p->join_pidfd < 0)
        bind_console(p, (int)slave);

    struct sync_msg m = {.kind = MSG_CONSOLE};
    CHECK(p, send_msg(p->sync_fd, &m, (int)master), STAGE_CONSOLE, 0);
    RAW(close, master);
    for (int i = 0; i < 3; i++)
        CHECK(p, move_fd((int)slave, i), STAGE_CONSOLE, 0);
    if (slave > 2)
        RAW(close, slave);
    CHECK(p, RAW(ioctl, 0, TIOCSCTTY, 0), STAGE_TTY, 0);
}

static void set_rlimits(const struct plan *p)
{
    for (size_t i = 0; i < p->nrlimits; i++) {
        uint64_t limit[2] = {p->rlimits[i].cur, p->rlimits[i].max};
        CHECK(p, RAW(prlimit64, 0, p->rlimits[i].resource, limit, NULL), STAGE_RLIMIT, (int)i);
    }
}

static void close_fds(const struct plan *p)
{
    int keep[] = {p->sync_fd, p->start_fd};
    close_all_but(p, keep, 2, 3 + p->keep_fds);
}

/* The create/start split: tell the parent (the OCI runtime's `create`, which then exits)
 * that everything up to exec is done, and block until `start` connects to the listening
 * socket start_fd.  The accepted connection takes the sync socket's place (close-on-exec):
 * `start` reads a later failure from it, or end-of-file once the exec happened. */
static void wait_for_start(const struct plan *p)
{
    struct sync_msg m = {.kind = MSG_WAITING};
    CHECK(p, send_msg(p->sync_fd, &m, -1), STAGE_START, 0);
    long conn;
    do {
        conn = RAW(accept4, p->start_fd, NULL, NULL, SOCK_CLOEXEC);
    } while (conn == -EINTR);
    CHECK(p, conn, STAGE_START, 0);
    CHECK(p, RAW(dup3, conn, p->sync_fd, O_CLOEXEC), STAGE_START, 0);
    RAW(close, conn);
    RAW(close, p->start_fd);
}

/* A process that exists only for its caller (the holder of a stopped container's root for
 * `cp`, which never execs) must not outlive a caller killed with SIGKILL: it gets SIGKILL
 * when the caller's thread ends.  Set after the identity changes (a change of the
 * effective ids clears it); a caller gone before that shows in the parent pid. */
static void die_with_caller(const struct plan *p)
{
    CHECK(p, RAW(prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), STAGE_SIGNALS, 0);
    if (RAW(getppid) != p->caller_pid)
        leave(127);
}

#if defined(__x86_64__)
#define AUDIT_ARCH_NATIVE AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_NATIVE AUDIT_ARCH_AARCH64
#endif

/* sysinfo(2) answered by the parent with the container's memory (boxd/_sysinfo.py): a
 * filter that hands that call of the native architecture to a listener
 * (SECCOMP_RET_USER_NOTIF) and lets every other call through, loaded just before the
 * container's own.  Stacked filters take the strictest action (KILL, TRAP, ERRNO before
 * USER_NOTIF before ALLOW), so a profile that refuses sysinfo still refuses it; and it is
 * loaded first because the container's filter may refuse seccomp(2) itself.  seccomp(2),
 * not prctl: only it asks for a listener.  The listener (close-on-exec) goes to the
 * parent and is closed here.  A kernel that refuses it (EINVAL before Linux 5.0, EBUSY
 * where a filter the caller inherited has a listener already) installs nothing: that is
 * reported without an fd, and the process goes on without (the host's sysinfo). */
static void load_sysinfo_filter(const struct plan *p)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_NATIVE, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sysinfo, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    long listener =
        RAW(seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    struct sync_msg m = {.kind = MSG_SYSINFO, .err = listener < 0 ? (int)-listener : 0};
    CHECK(p, send_msg(p->sync_fd, &m, listener < 0 ? -1 : (int)listener), STAGE_SECCOMP, 1);
    if (listener >= 0)
        RAW(close, listener);
}

static void load_seccomp(const struct plan *p)
{
    if (p->sysinfo)
        load_sysinfo_filter(p);
    struct sock_fprog prog = {.len = p->nfilter, .filter = p->filter};
    CHECK(p, RAW(prctl, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0), STAGE_SECCOMP, 0);
}

/* Every capability the plan's bounding set leaves out is dropped, without reading first
 * whether it is there (one call per capability dropped, not two): dropping an absent one
 * succeeds; only a process without CAP_SETPCAP is refused, which is then no failure for a
 * capability its bounding set already lacks. */
static void drop_bounding(const struct plan *p)
{
    for (int cap = 0; cap < 64; cap++) {
        if ((p->bounding >> cap) & 1)
            continue;
        long rc = RAW(prctl, PR_CAPBSET_DROP, cap, 0, 0, 0);
        if (rc == -EINVAL)
            break; /* past the kernel's last capability */
        if (rc == -EPERM && RAW(prctl, PR_CAPBSET_READ, cap, 0, 0, 0) == 0)
            continue;
        CHECK(p, rc, STAGE_CAPS, cap);
    }
}

static void apply_caps(const struct plan *p)
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    for (int i = 0; i < 2; i++) {
        data[i].effective = (uint32_t)(p->effective >> (32 * i));
        data[i].permitted = (uint32_t)(p->permitted >> (32 * i));
        data[i].inheritable = (uint32_t)(p->inheritable >> (32 * i));
    }
    CHECK(p, RAW(capset, &header, data), STAGE_CAPS, 0);
    CHECK(p, RAW(prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), STAGE_CAPS, 0);
    for (int cap = 0; cap < 64; cap++)
        if ((p->ambient >> cap) & 1)
            CHECK(p, RAW(prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0), STAGE_CAPS,
                  cap);
}

static void set_identity(const struct plan *p)
{
    if (p->has_caps) {
        drop_bounding(p); /* needs CAP_SETPCAP, which setresuid may take away */
        CHECK(p, RAW(prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0), STAGE_CAPS, 0);
    }
    CHECK(p, RAW(setgroups, p->ngroups, p->groups), STAGE_SETGROUPS, 0);
    CHECK(p, RAW(setresgid, p->gid, p->gid, p->gid), STAGE_SETGID, 0);
    CHECK(p, RAW(setresuid, p->uid, p->uid, p->uid), STAGE_SETUID, 0);
    if (p->has_caps)
        apply_caps(p);
}

/* execve argv[0], searching the search path like execvp when it holds no "/". */
__attribute__((noreturn)) static void exec_program(const struct plan *p)
{
    const char *file = p->argv[0];
    if (strchr(file, '/') != NULL)
        fail(p, STAGE_EXEC, (int)-RAW(execve, file, p->argv, p->envp), 0);
    size_t flen = strlen(file);
    int err = ENOENT;
    int denied = 0;
    char path[PATH_MAX];
    for (size_t i = 0; i < p->nsearch; i++) {
        size_t dlen = strlen(p->search[i]);
        if (dlen + 1 + flen + 1 > sizeof path) {
            err = ENAMETOOLONG;
            continue;
        }
        memcpy(path, p->search[i], dlen);
        path[dlen] = '/';
        memcpy(path + dlen + 1, file, flen + 1);
        int failed = (int)-RAW(execve, path, p->argv, p->envp);
        switch (failed) {
        case EACCES:
            denied = 1;
            break;
        case ENOENT:
        case ENOTDIR:
        case ESTALE:
        case ENODEV:
        case ETIMEDOUT:
        case ENAMETOOLONG:
            err = failed;
            break;
        default:
            fail(p, STAGE_EXEC, failed, (int)i);
        }
    }
    fail(p, STAGE_EXEC, denied ? EACCES : (err == ENAMETOOLONG ? err : ENOENT), -1);
}

__attribute__((noreturn)) void child_main(const struct plan *p)
{
    /* A shim's container has a copy of the intermediate's report socket: closed at once,
     * so that the caller reads end of file when the shim runs, not when this process has
     * also joined its cgroups and closed its fds (it releases and configures this process
     * meanwhile). */
    if (p->shim_path != NULL)
        RAW(close, p->report_fd);
    if (p->join_pidfd < 0) /* in join mode the intermediate joined them */
        join_cgroups(p);
    int narrowed = set_up_off_the_callers_cpu(p); /* after the cpuset, which sets it */
    keep_only_what_the_child_needs(p, 0);
    reset_signals(p);
    int trees[MAX_ATTACH];
    wait_for_parent(p, trees);
    for (size_t i = 0; i < p->nns; i++) {
        CHECK(p, RAW(setns, p->ns_fds[i], p->ns_types[i]), STAGE_JOIN, (int)i);
        RAW(close, p->ns_fds[i]);
    }
    /* In a new user namespace this process is still the host uid it was cloned as, which
     * the namespace does not map: become its root (the maps are written by now) so that
     * what the mounts create and check is owned by the mapped ids. */
    if (p->clone_flags & CLONE_NEWUSER) {
        CHECK(p, RAW(setresgid, 0, 0, 0), STAGE_SETGID, 0);
        CHECK(p, RAW(setresuid, 0, 0, 0), STAGE_SETUID, 0);
    }
    if (unshared_by_child(p) & CLONE_NEWCGROUP)
        CHECK(p, RAW(unshare, CLONE_NEWCGROUP), STAGE_CGROUP_NS, 0);
    if (unshared_by_child(p) & CLONE_NEWNET)
        CHECK(p, RAW(unshare, CLONE_NEWNET), STAGE_NET_NS, 0);
    if (unshared_by_child(p) & CLONE_NEWIPC)
        CHECK(p, RAW(unshare, CLONE_NEWIPC), STAGE_IPC_NS, 0);
    for (int i = 0; i < 3; i++)
        if (p->stdio[i] >= 0)
            CHECK(p, move_fd(p->stdio[i], i), STAGE_STDIO, i);
    if (p->hostname != NULL && (p->clone_flags & CLONE_NEWUTS))
        CHECK(p, RAW(sethostname, p->hostname, strlen(p->hostname)), STAGE_HOSTNAME, 0);
    if (p->clone_flags & CLONE_NEWNET)
        CHECK(p, loopback_up(), STAGE_LOOPBACK, 0);
    if (p->umask >= 0)
        RAW(umask, p->umask);
    setup_mounts(p, trees);
    if (p->rootfs != NULL)
        pivot(p);
    if (p->console)
        open_console(p);
    if (p->nlinks > 0) {
        /* The parent makes the interfaces while the mounts above are set up. */
        wait_for_links(p);
        int index = 0;
        long rc = links_up(p, &index);
        CHECK(p, rc, STAGE_NETWORK, index);
    }
    set_rlimits(p);
    reset_affinity(p, narrowed);
    close_fds(p);
    if (p->nfilter && !p->nnp)
        load_seccomp(p);
    set_identity(p);
    if (p->nnp)
        CHECK(p, RAW(prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), STAGE_NO_NEW_PRIVS, 0);
    CHECK(p, RAW(chdir, p->cwd), STAGE_CHDIR, 0);
    if (p->die_with_caller)
        die_with_caller(p);
    if (p->start_fd >= 0)
        wait_for_start(p);
    if (p->nfilter && p->nnp)
        load_seccomp(p);
    exec_program(p);
}

static long clone_on_stack(struct clone_args_v2 *args, struct vm_stack *stack,
                           const struct plan *p, void (*body)(const struct plan *));

/* Join mode: enter the target's namespaces, create the final process, report its pid.
 * This intermediate and the final process share the caller's memory (CLONE_VM, on the
 * plan's two stacks), except where it joins a user namespace: setns refuses that to a
 * process that shares its memory, so there it is a copy of the caller, and so is the
 * final process (container_stack NULL). */
__attribute__((noreturn)) void intermediate_main(const struct plan *p)
{
    join_cgroups(p);
    keep_only_what_the_child_needs(p, 1);
    /* Never readable through /proc by what it is about to join (where it is a copy; the
     * caller's memory, shared, is non-dumpable already). */
    CHECK(p, RAW(prctl, PR_SET_DUMPABLE, 0, 0, 0, 0), STAGE_JOIN, 0);
    CHECK(p, RAW(setns, p->join_pidfd, p->join_flags), STAGE_JOIN, 0);
    struct clone_args_v2 args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_PARENT;
    long pid = clone_on_stack(&args, p->container_stack, p, child_main);
    CHECK(p, pid, STAGE_FORK, 0);
    int report = (int)pid;
    long n;
    do {
        n = RAW(write, p->report_fd, &report, sizeof report);
    } while (n == -EINTR);
    leave(n == (long)sizeof report ? 0 : 1);
}

/* Shim mode: a failure record on the report socket; the container (if any) is killed. */
__attribute__((noreturn)) static void shim_fail(int report, int pidfd, int stage, long err,
                                                int index)
{
    struct sync_msg m = {.kind = MSG_FAILED, .stage = stage, .err = (int)-err, .value = index};
    if (pidfd >= 0)
        RAW(pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    send_msg(report, &m, -1);
    leave(127);
}

#define SHIM_CHECK(report, pidfd, expr)                                                        \
    do {                                                                                       \
        long check_ = (expr);                                                                  \
        if (check_ < 0)                                                                        \
            shim_fail((report), (pidfd), STAGE_SHIM, check_, 0);                               \
    } while (0)

/* Shim mode (see shim.c): this process clones the container, so that it is the container's
 * parent, makes the listening socket in the container's directory, reports the container's
 * pid and pidfd on the report socket and becomes boxd-shim.  The report socket is
 * close-on-exec: end-of-file after the pid record means the shim runs. */
__attribute__((noreturn)) void shim_main(const struct plan *p)
{
    keep_only_what_the_child_needs(p, 1);
    reset_signals(p);
    /* A joined pid namespace (--pid container:NAME) is entered here, not by the caller's
     * thread as without a shim: setns(CLONE_NEWPID) places only this process's later
     * children in it, so the container is born there while this shim stays in the
     * caller's, out of reach of the kill that ends that namespace with its init. */
    for (size_t i = 0; i < p->nns; i++)
        if (p->ns_types[i] == CLONE_NEWPID) {
            long rc = RAW(setns, p->ns_fds[i], CLONE_NEWPID);
            if (rc < 0)
                shim_fail(p->report_fd, -1, STAGE_JOIN, rc, (int)i);
        }
    struct clone_args_v2 args;
    memset(&args, 0, sizeof args);
    int pidfd = -1;
    args.flags = CLONE_PIDFD | (p->clone_flags & ~unshared_by_child(p));
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = SIGCHLD;
    if (p->cgroup_dir >= 0) { /* the container, not this shim, goes into its cgroup */
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)p->cgroup_dir;
    }
    long pid = clone_on_stack(&args, p->container_stack, p, child_main);
    if (pid < 0)
        shim_fail(p->report_fd, -1, STAGE_FORK, pid, 0);
    /* Above 4, where the shim's fds go; after the clone, so that the container has only
     * p->report_fd to close (first thing: child_main). */
    long report = RAW(fcntl, p->report_fd, F_DUPFD_CLOEXEC, 10);
    SHIM_CHECK(p->report_fd, pidfd, report);
    /* From here on only the container holds its end of the sync socket, its stdio and
     * its cgroups' fds. */
    RAW(close, p->sync_fd);
    for (size_t i = 0; i < p->ntasks; i++)
        RAW(close, p->cgroup_tasks[i]);
    if (p->cgroup_dir >= 0)
        RAW(close, p->cgroup_dir);
    for (int i = 0; i < 3; i++)
        if (p->stdio[i] > 2)
            RAW(close, p->stdio[i]);
    long null = RAW(openat, AT_FDCWD, "/dev/null", O_RDWR | O_CLOEXEC);
    SHIM_CHECK(report, pidfd, null);
    for (int i = 0; i < 3; i++)
        SHIM_CHECK(report, pidfd, move_fd((int)null, i));
    RAW(close, null);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, "shim.sock", sizeof "shim.sock");
    SHIM_CHECK(report, pidfd, RAW(chdir, p->shim_dir));
    long rc = RAW(unlinkat, AT_FDCWD, addr.sun_path, 0);
    if (rc != -ENOENT)
        SHIM_CHECK(report, pidfd, rc);
    long listener = RAW(socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    SHIM_CHECK(report, pidfd, listener);
    SHIM_CHECK(report, pidfd, RAW(bind, listener, &addr, sizeof addr));
    SHIM_CHECK(report, pidfd, RAW(listen, listener, 4));
    /* The shim's fds 3 and 4 (dup3 without flags: not close-on-exec); everything else is
     * closed. */
    long high_listener = RAW(fcntl, listener, F_DUPFD_CLOEXEC, 10);
    SHIM_CHECK(report, pidfd, high_listener);
    long high_pidfd = RAW(fcntl, pidfd, F_DUPFD_CLOEXEC, 10);
    SHIM_CHECK(report, pidfd, high_pidfd);
    SHIM_CHECK(report, pidfd, move_fd((int)high_listener, 3));
    SHIM_CHECK(report, pidfd, move_fd((int)high_pidfd, 4));
    int keep[] = {3, 4, (int)report};
    close_all_but(p, keep, (int)(sizeof keep / sizeof keep[0]), 3);

    struct sync_msg m = {.kind = MSG_STARTED, .value = (int32_t)pid};
    SHIM_CHECK(report, 4, send_msg((int)report, &m, 4));
    char *none[] = {NULL};
    shim_fail((int)report, 4, STAGE_SHIM, RAW(execve, p->shim_path, p->shim_argv, none), 0);
}

/* ---- the clone
 *
 * With a stack (struct vm_stack, spawn.h), the child shares the caller's memory
 * (CLONE_VM, as posix_spawn's child does) instead of getting a copy of it: the copy of a
 * daemon's page tables, and the copy-on-write faults the daemon takes after it, were most
 * of the time a start spent on the event loop's thread.  Such a child runs on that stack,
 * makes raw calls only (see RAW), and reads the plan, which the caller keeps unchanged
 * until the kernel clears stack->alive (CLONE_CHILD_CLEARTID): when the child leaves the
 * memory, by exec or exit. */
static long clone_on_stack(struct clone_args_v2 *args, struct vm_stack *stack,
                           const struct plan *p, void (*body)(const struct plan *))
{
    if (stack == NULL) {
        long pid = RAW(clone3, args, sizeof *args);
        if (pid == 0)
            body(p);
        return pid;
    }
    args->flags |= CLONE_VM | CLONE_CHILD_CLEARTID | CLONE_PARENT_SETTID;
    args->stack = (uint64_t)(uintptr_t)stack->base;
    args->stack_size = stack->size;
    args->child_tid = (uint64_t)(uintptr_t)&stack->alive;
    args->parent_tid = (uint64_t)(uintptr_t)&stack->tid;
    __atomic_store_n(&stack->tid, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&stack->alive, 1, __ATOMIC_SEQ_CST);
    long ret;
    /* The child starts on its own stack, where no C frame exists to return through: it
     * calls body(p) (which never returns) straight from here. */
#if defined(__x86_64__)
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "mov %[p], %%rdi\n\t"
                     "call *%[body]\n\t"
                     "ud2\n"
                     "1:"
                     : "=a"(ret)
                     : "0"((long)SYS_clone3), "D"(args), "S"(sizeof *args), [p] "r"(p),
                       [body] "r"(body)
                     : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = SYS_clone3;
    register long x0 __asm__("x0") = (long)args;
    register long x1 __asm__("x1") = (long)sizeof *args;
    __asm__ volatile("svc #0\n\t"
                     "cbnz x0, 1f\n\t"
                     "mov x0, %[p]\n\t"
                     "blr %[body]\n\t"
                     "brk #0\n"
                     "1:"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), [p] "r"(p), [body] "r"(body)
                     : "memory");
    ret = x0;
#endif
    if (ret < 0)
        __atomic_store_n(&stack->alive, 0, __ATOMIC_SEQ_CST);
    return ret;
}

long spawn_clone(struct clone_args_v2 *args, struct vm_stack *stack, const struct plan *p,
                 void (*body)(const struct plan *))
{
    /* Every signal blocked (glibc's own two included), so that no handler of the parent's
     * runs in the child before reset_signals. */
    uint64_t all = ~(uint64_t)0, old;
    RAW(rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof all);
    long pid = clone_on_stack(args, stack, p, body);
    RAW(rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof old);
    return pid;
}

/* In the target's mount namespace (which also makes its root this process's root), detach
 * what is mounted at each target and attach the tree instead.  A copy of the caller (no
 * CLONE_VM), so glibc's async-signal-safe wrappers are fine here. */
__attribute__((noreturn)) static void rebind_child(int pidfd, size_t n, const int *trees,
                                                   const char *const *targets, int report)
{
    int record[2] = {-1, 0};
    if (setns(pidfd, CLONE_NEWNS) < 0)
        goto failed;
    for (size_t i = 0; i < n; i++) {
        record[0] = (int)i;
        if (umount2(targets[i], MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL)
            goto failed;
        if (syscall(SYS_move_mount, trees[i], "", AT_FDCWD, targets[i],
                    MOVE_MOUNT_F_EMPTY_PATH) < 0)
            goto failed;
    }
    _exit(0);
failed:
    record[1] = errno;
    if (write(report, record, sizeof record) < 0)
        _exit(2);
    _exit(1);
}

/* tree_clone()'s child: in the mount namespace of nsfd (which also makes its root this
 * process's root), a detached copy of the mount at path (open_tree's flags), opened into
 * the fd table it shares with the caller (CLONE_FILES); that fd, or -1 and errno, go to
 * `report`. */
__attribute__((noreturn)) static void tree_child(int nsfd, const char *path, unsigned int flags,
                                                 int report)
{
    int record[2] = {-1, 0};
    if (setns(nsfd, CLONE_NEWNS) == 0)
        record[0] = (int)syscall(SYS_open_tree, AT_FDCWD, path, flags);
    record[1] = record[0] < 0 ? errno : 0;
    _exit(write(report, record, sizeof record) == (ssize_t)sizeof record ? 0 : 1);
}

/* clone3 of a copy of the caller with every signal blocked, so that no handler of the
 * caller's runs in it: 0 in the child (whose signals stay blocked), its pid or -1 with
 * errno in the caller (whose mask is restored). */
static long clone_quiet(unsigned long long flags)
{
    struct clone_args_v2 args;
    memset(&args, 0, sizeof args);
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0)
        return 0;
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return pid;
}

long tree_clone(int nsfd, const char *path, unsigned int flags, int report)
{
    long pid = clone_quiet(CLONE_FILES);
    if (pid == 0)
        tree_child(nsfd, path, flags, report);
    return pid;
}

long rebind_clone(int pidfd, size_t n, const int *trees, const char *const *targets,
                  int report)
{
    long pid = clone_quiet(0);
    if (pid == 0)
        rebind_child(pidfd, n, trees, targets, report);
    return pid;
}
