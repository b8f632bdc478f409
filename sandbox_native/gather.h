/* gather.c's function for sandbox_native's method table. */
#ifndef BOXD_GATHER_H
#define BOXD_GATHER_H

#include <Python.h>

PyObject *gather_read(PyObject *self, PyObject *args);

#endif
