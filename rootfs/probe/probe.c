/* probe: a static multi-call test payload for boxd's tests.
 *
 *   probe <command> [args...]
 *
 * Output is machine-readable, one item a line.  Informational commands print key=value
 * lines.  Commands that attempt something (syscall, open, write, mknod, chroot-escape,
 * tiocsti, ptrace) print as their FIRST line either "ok" or "errno=N NAME" (NAME as in
 * <errno.h>, e.g. "errno=1 EPERM"), optionally followed by key=value lines, and exit 0 on
 * ok and 1 on an errno.  Usage errors go to stderr with exit status 2.
 *
 * Build: gcc -static -O2 -Wall -Wextra -Werror -o probe probe.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---- helpers --------------------------------------------------------------------------- */

static void usage(const char *msg)
{
    fprintf(stderr, "probe: %s\n", msg);
    exit(2);
}

static int report(long rc)
{
    if (rc >= 0) {
        printf("ok\n");
        return 0;
    }
    int err = errno;
    const char *name = strerrorname_np(err);
    printf("errno=%d %s\n", err, name ? name : "UNKNOWN");
    return 1;
}

static long number(const char *s, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || end == s || *end) {
        fprintf(stderr, "probe: %s is not a number: %s\n", what, s);
        exit(2);
    }
    return v;
}

static int cat_file(const char *path)
{
    char buf[8192];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "probe: open %s: %s\n", path, strerror(errno));
        return 1;
    }
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    int err = n < 0 ? errno : 0;
    close(fd);
    if (err) {
        fprintf(stderr, "probe: read %s: %s\n", path, strerror(err));
        return 1;
    }
    return 0;
}

/* Print the lines of /proc/self/status whose key starts with one of the prefixes, as
 * key=value. */
static int status_lines(const char *const *prefixes)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) {
        fprintf(stderr, "probe: /proc/self/status: %s\n", strerror(errno));
        return 1;
    }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        for (const char *const *p = prefixes; *p; p++) {
            if (strncmp(line, *p, strlen(*p)) != 0)
                continue;
            char *colon = strchr(line, ':');
            if (!colon)
                continue;
            *colon = '\0';
            char *value = colon + 1;
            value += strspn(value, " \t");
            printf("%s=%s", line, value);
            break;
        }
    }
    fclose(f);
    return 0;
}

static int list_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            printf("entry=%s\n", e->d_name);
    closedir(d);
    return 0;
}

/* ---- syscall names --------------------------------------------------------------------- */

struct sysname {
    const char *name;
    long nr;
};

#define SYS(n) {#n, SYS_##n}
static const struct sysname syscalls[] = {
    SYS(acct), SYS(add_key), SYS(bpf), SYS(chroot), SYS(clock_settime), SYS(clone),
    SYS(delete_module), SYS(fanotify_init), SYS(finit_module), SYS(fsconfig), SYS(fsmount),
    SYS(fsopen), SYS(getpid), SYS(getuid), SYS(init_module), SYS(io_uring_setup),
    SYS(kcmp), SYS(kexec_load), SYS(keyctl), SYS(mknodat), SYS(mount), SYS(move_mount),
    SYS(name_to_handle_at), SYS(open_by_handle_at), SYS(open_tree), SYS(perf_event_open),
    SYS(personality), SYS(pivot_root), SYS(process_vm_readv), SYS(process_vm_writev),
    SYS(ptrace), SYS(quotactl), SYS(reboot), SYS(request_key), SYS(setdomainname),
    SYS(sethostname), SYS(setns), SYS(settimeofday), SYS(swapoff), SYS(swapon),
    SYS(syslog), SYS(umount2), SYS(uname), SYS(unshare), SYS(userfaultfd), SYS(vhangup),
#ifdef SYS_clone3
    SYS(clone3),
#endif
#ifdef __x86_64__
    SYS(iopl), SYS(ioperm), SYS(mknod), SYS(sysfs), SYS(ustat), SYS(uselib),
#endif
};

static long syscall_number(const char *s)
{
    for (size_t i = 0; i < sizeof syscalls / sizeof syscalls[0]; i++)
        if (!strcmp(syscalls[i].name, s))
            return syscalls[i].nr;
    if (*s < '0' || *s > '9') {
        fprintf(stderr, "probe: unknown syscall name %s (give its number)\n", s);
        exit(2);
    }
    return number(s, "syscall number");
}

/* An argument: a number when it parses as one, otherwise a pointer to the string. */
static long syscall_arg(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (!errno && end != s && !*end)
        return v;
    return (long)(uintptr_t)s;
}

/* ---- commands -------------------------------------------------------------------------- */

static int cmd_pid(void)
{
    printf("pid=%d\nppid=%d\nsid=%d\npgid=%d\n", getpid(), getppid(), getsid(0), getpgid(0));
    return 0;
}

static int cmd_hostname(void)
{
    char name[HOST_NAME_MAX + 1];
    if (gethostname(name, sizeof name) < 0)
        return report(-1);
    printf("hostname=%s\n", name);
    return 0;
}

static int cmd_cwd(void)
{
    char path[PATH_MAX];
    if (!getcwd(path, sizeof path))
        return report(-1);
    printf("cwd=%s\n", path);
    return 0;
}

static int cmd_id(void)
{
    gid_t groups[256];
    int n = getgroups(256, groups);
    if (n < 0)
        return report(-1);
    printf("uid=%d\neuid=%d\ngid=%d\negid=%d\ngroups=", getuid(), geteuid(), getgid(),
           getegid());
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? "," : "", groups[i]);
    printf("\n");
    return 0;
}

static int cmd_caps(void)
{
    static const char *const keys[] = {"Cap", "NoNewPrivs", "Seccomp", NULL};
    return status_lines(keys);
}

static int cmd_sigs(void)
{
    static const char *const keys[] = {"SigBlk", "SigIgn", NULL};
    return status_lines(keys);
}

static int cmd_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return report(-1);
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == self)
            continue;
        char target[PATH_MAX];
        ssize_t n = readlinkat(self, e->d_name, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = '\0';
        printf("fd.%s=%s\n", e->d_name, target);
    }
    closedir(d);
    return 0;
}

static int cmd_syscall(int argc, char **argv)
{
    if (argc < 1 || argc > 7)
        usage("syscall NAME_OR_NR [up to 6 args]");
    long nr = syscall_number(argv[0]);
    long a[6] = {0};
    for (int i = 1; i < argc; i++)
        a[i - 1] = syscall_arg(argv[i]);
    long rc = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    int result = report(rc);
    if (rc >= 0)
        printf("ret=%ld\n", rc);
    return result;
}

static int open_flags(const char *s)
{
    if (!strcmp(s, "r"))
        return O_RDONLY;
    if (!strcmp(s, "w"))
        return O_WRONLY;
    if (!strcmp(s, "rw"))
        return O_RDWR;
    if (!strcmp(s, "create"))
        return O_WRONLY | O_CREAT | O_TRUNC;
    return (int)number(s, "open flags (r, w, rw, create or a number)");
}

static int cmd_open(int argc, char **argv)
{
    if (argc < 1 || argc > 2)
        usage("open PATH [r|w|rw|create|NUMBER]");
    int fd = open(argv[0], (argc == 2 ? open_flags(argv[1]) : O_RDONLY) | O_CLOEXEC, 0644);
    int result = report(fd);
    if (fd >= 0)
        close(fd);
    return result;
}

static int cmd_write(int argc, char **argv)
{
    if (argc != 2)
        usage("write PATH DATA");
    int fd = open(argv[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return report(-1);
    size_t len = strlen(argv[1]);
    ssize_t n = write(fd, argv[1], len);
    int err = errno;
    close(fd);
    if (n >= 0 && (size_t)n != len) {
        err = EIO;
        n = -1;
    }
    errno = err;
    return report(n < 0 ? -1 : 0);
}

static int cmd_mknod(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "c") && strcmp(argv[1], "b")))
        usage("mknod PATH c|b MAJOR MINOR");
    mode_t type = argv[1][0] == 'c' ? S_IFCHR : S_IFBLK;
    dev_t dev = makedev((unsigned)number(argv[2], "major"), (unsigned)number(argv[3], "minor"));
    return report(mknod(argv[0], type | 0600, dev));
}

static int cmd_stat(int argc, char **argv)
{
    if (argc != 1)
        usage("stat PATH");
    struct stat st;
    if (lstat(argv[0], &st) < 0)
        return report(-1);
    const char *type = S_ISREG(st.st_mode)   ? "file"
                       : S_ISDIR(st.st_mode) ? "dir"
                       : S_ISLNK(st.st_mode) ? "link"
                       : S_ISCHR(st.st_mode) ? "char"
                       : S_ISBLK(st.st_mode) ? "block"
                       : S_ISFIFO(st.st_mode) ? "fifo"
                                              : "socket";
    printf("type=%s\nmode=%04o\nuid=%d\ngid=%d\nmajor=%u\nminor=%u\n", type,
           st.st_mode & 07777, st.st_uid, st.st_gid, major(st.st_rdev), minor(st.st_rdev));
    return 0;
}

static int cmd_ls(int argc, char **argv)
{
    if (argc != 1)
        usage("ls PATH");
    return list_dir(argv[0]) < 0 ? report(-1) : 0;
}

/* The classic escape from a chroot: chroot into a subdirectory while keeping the cwd
 * outside it, climb with "..", and chroot there.  In a pivot_root'ed container with the old
 * root detached this only ever reaches the container's own root. */
static int cmd_chroot_escape(int argc, char **argv)
{
    if (argc > 1)
        usage("chroot-escape [WRITABLE_DIR]");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/probe-escape-%d", argc ? argv[0] : "/tmp", getpid());
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return report(-1);
    if (chroot(dir) < 0) {
        int result = report(-1);
        rmdir(dir);
        return result;
    }
    for (int i = 0; i < 64; i++)
        if (chdir("..") < 0)
            return report(-1);
    if (chroot(".") < 0)
        return report(-1);
    report(0);
    list_dir("/");
    rmdir(dir);
    return 0;
}

static int cmd_tiocsti(void)
{
    char c = ' ';
    return report(ioctl(0, TIOCSTI, &c));
}

static int cmd_ptrace(int argc, char **argv)
{
    if (argc != 1)
        usage("ptrace PID");
    /* Seize without stopping the tracee; our exit detaches. */
    return report(ptrace(PTRACE_SEIZE, (pid_t)number(argv[0], "pid"), NULL, NULL));
}

static int cmd_sleep(int argc, char **argv)
{
    if (argc != 1)
        usage("sleep SECONDS");
    char *end;
    double s = strtod(argv[0], &end);
    if (end == argv[0] || *end || s < 0)
        usage("sleep takes a non-negative number of seconds");
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    fflush(stdout);
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return 0;
}

static int cmd_env(void)
{
    for (char **e = environ; *e; e++)
        printf("%s\n", *e);
    return 0;
}

static int cmd_isatty(void)
{
    for (int fd = 0; fd < 3; fd++)
        printf("fd.%d=%d\n", fd, isatty(fd));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage("usage: probe pid|hostname|cwd|id|caps|fds|sigs|mounts|syscall|open|write|"
              "mknod|stat|ls|chroot-escape|tiocsti|ptrace|sleep|exit|cat|env|isatty [args]");
    const char *cmd = argv[1];
    int n = argc - 2;
    char **args = argv + 2;
    if (!strcmp(cmd, "pid"))
        return cmd_pid();
    if (!strcmp(cmd, "hostname"))
        return cmd_hostname();
    if (!strcmp(cmd, "cwd"))
        return cmd_cwd();
    if (!strcmp(cmd, "id"))
        return cmd_id();
    if (!strcmp(cmd, "caps"))
        return cmd_caps();
    if (!strcmp(cmd, "fds"))
        return cmd_fds();
    if (!strcmp(cmd, "sigs"))
        return cmd_sigs();
    if (!strcmp(cmd, "mounts"))
        return cat_file("/proc/self/mountinfo");
    if (!strcmp(cmd, "syscall"))
        return cmd_syscall(n, args);
    if (!strcmp(cmd, "open"))
        return cmd_open(n, args);
    if (!strcmp(cmd, "write"))
        return cmd_write(n, args);
    if (!strcmp(cmd, "mknod"))
        return cmd_mknod(n, args);
    if (!strcmp(cmd, "stat"))
        return cmd_stat(n, args);
    if (!strcmp(cmd, "ls"))
        return cmd_ls(n, args);
    if (!strcmp(cmd, "chroot-escape"))
        return cmd_chroot_escape(n, args);
    if (!strcmp(cmd, "tiocsti"))
        return cmd_tiocsti();
    if (!strcmp(cmd, "ptrace"))
        return cmd_ptrace(n, args);
    if (!strcmp(cmd, "sleep"))
        return cmd_sleep(n, args);
    if (!strcmp(cmd, "exit")) {
        if (n != 1)
            usage("exit CODE");
        exit((int)number(args[0], "exit code"));
    }
    if (!strcmp(cmd, "cat")) {
        if (n != 1)
            usage("cat PATH");
        return cat_file(args[0]);
    }
    if (!strcmp(cmd, "env"))
        return cmd_env();
    if (!strcmp(cmd, "isatty"))
        return cmd_isatty();
    fprintf(stderr, "probe: unknown command %s\n", cmd);
    return 2;
}
