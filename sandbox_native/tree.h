/* tree.c's function for sandbox_native's method table. */
#ifndef BOXD_TREE_H
#define BOXD_TREE_H

#include <Python.h>

PyObject *remove_tree(PyObject *self, PyObject *args);

#endif
