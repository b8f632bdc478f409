/*
 * remove_tree(): delete a directory tree without the GIL (boxd/_store.py's trash).  A
 * removed container's directory (its overlay's upper and work directories, its logs and
 * records) was deleted by shutil.rmtree in a worker thread, which takes the GIL back for
 * every entry: while twenty containers start at once, that thread's Python made the event
 * loop's thread wait for the GIL.  Here the whole tree goes in one call.
 *
 * Symbolic links are removed, never followed; a directory on another file system (a mount
 * left inside) is not entered and stays, counted as left.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tree.h"

/* Deeper trees are left: every level holds a directory fd. */
#define MAX_DEPTH 512

/* Remove name (below the directory parent) and all it holds, never leaving file system dev.
 * Returns the number of entries left; *first is the errno of the first failure. */
static long remove_at(int parent, const char *name, dev_t dev, int depth, int *first)
{
    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR) {
        if (!*first)
            *first = errno;
        return 1;
    }
    if (depth >= MAX_DEPTH) {
        if (!*first)
            *first = ELOOP;
        return 1;
    }
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_dev != dev) {
        int err = fd < 0 ? errno : EXDEV;
        if (fd >= 0)
            close(fd);
        if (!*first)
            *first = err;
        return 1;
    }
    DIR *dir = fdopendir(fd);
    if (dir == NULL) {
        if (!*first)
            *first = errno;
        close(fd);
        return 1;
    }
    long left = 0;
    int err = ENOTEMPTY;
    /* Two passes at most: whether readdir still shows what was unlinked during the first
     * is unspecified, and entries it missed are found by the second. */
    for (int pass = 0; pass < 2 && !left; pass++) {
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
                continue;
            left += remove_at(dirfd(dir), entry->d_name, dev, depth + 1, first);
        }
        if (!left) {
            if (unlinkat(parent, name, AT_REMOVEDIR) == 0 || errno == ENOENT) {
                closedir(dir);
                return 0;
            }
            err = errno;
            if (err != ENOTEMPTY)
                break;
            rewinddir(dir);
        }
    }
    closedir(dir);
    if (!*first)
        *first = err;
    return left + 1;
}

PyObject *remove_tree(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *given, *path;
    if (!PyArg_ParseTuple(args, "O:remove_tree", &given) || !PyUnicode_FSConverter(given, &path))
        return NULL;
    const char *p = PyBytes_AsString(path);
    if (p == NULL) {
        Py_DECREF(path);
        return NULL;
    }
    long left = 0;
    int first = 0;
    Py_BEGIN_ALLOW_THREADS
    struct stat st;
    if (lstat(p, &st) == 0)
        left = remove_at(AT_FDCWD, p, st.st_dev, 0, &first);
    else if (errno != ENOENT)
        left = 1, first = errno;
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (left) {
        errno = first;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, given);
    } else {
        result = Py_NewRef(Py_None);
    }
    Py_DECREF(path);
    return result;
}
