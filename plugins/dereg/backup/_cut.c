/* Format 7's row cut in C (module `_dereg_cut`): the loop of `groupkeys._GroupRouter.write`, which
 * costs a few Python steps per sealed row, done without a Python object per row but the lookup key.
 *
 * cut(block, link, ordinal, group_size, first_line, groups, counts, keys=None)
 *     -> (end, rows, stored_rows, stored, plain)
 *
 * `block`'s whole lines (up to its last newline, `end` bytes) are COPY text rows. A row's link is
 * its field `link` (an int), or (None) an extra field in front, taken off. The link is looked up in
 * `ordinal` ({bytes: subject number}); a row whose link is not there goes, as it is, to `stored`;
 * one of subject `n` is appended as `n\tline\trow\n` to the bytearray `groups[n // group_size]`
 * (`line` counts from `first_line`) and counts one more entry in `counts` (an array('q') of one
 * item per group). `plain` is the plain COPY text (with the front field taken off), or None when
 * `link` is an int (the block's whole lines are that text). `groupkeys.cut_reference` is the same
 * in Python; tests/unit/test_group_cut.py compares them.
 *
 * The lookup is most of the cost (a 200,000-entry dict: cache misses), and rows often come in
 * subject order, so two guesses go first: the link of the row before (the same answer), and, with
 * `keys` (a list with `ordinal[keys[m]] == m` for every m, i.e. `ordinal` is
 * `dict(zip(keys, range(len(keys))))` of distinct keys), the key after the last one found. A guess
 * is checked by comparing the bytes, so it never changes the answer; a wrong guess costs a compare.
 *
 * Errors never quote the data (it is personal): they name what is wrong only.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* What `ordinal` says of a ref: its subject number (>= 0), -1 when it maps to no subject (absent, or
 * None), FAILED with an exception set, NEGATIVE (no exception yet: the caller says which line) when
 * the number is below zero. */
#define FAILED (-2)
#define NEGATIVE (-3)
static Py_ssize_t
subject_of(PyObject *ordinal, const char *ref, Py_ssize_t ref_len)
{
    PyObject *key = PyBytes_FromStringAndSize(ref, ref_len);
    if (key == NULL)
        return FAILED;
    PyObject *value = PyDict_GetItemWithError(ordinal, key);
    Py_XINCREF(value); /* a borrowed reference: the dict may change once the key is let go */
    Py_DECREF(key);
    if (value == NULL || value == Py_None) {
        Py_XDECREF(value);
        return PyErr_Occurred() ? FAILED : -1;
    }
    Py_ssize_t n = PyLong_AsSsize_t(value);
    Py_DECREF(value);
    if (n == -1 && PyErr_Occurred())
        return FAILED;
    return n < 0 ? NEGATIVE : n;
}

/* n >= 0 as decimal digits at `out` (room for 20); returns how many */
static Py_ssize_t
put_decimal(char *out, unsigned long long n)
{
    char tmp[20];
    Py_ssize_t k = 0;
    do {
        tmp[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    for (Py_ssize_t i = 0; i < k; i++)
        out[i] = tmp[k - 1 - i];
    return k;
}

static PyObject *
cut(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer block = {0}, counts = {0};
    PyObject *link_obj, *ordinal, *groups_list, *counts_obj, *keys = Py_None;
    Py_ssize_t group_size, link = -1, ngroups = 0, end = 0;
    long long first_line;
    PyObject **groups = NULL, *stored = NULL, *plain = NULL, *result = NULL;
    char *stored_at, *plain_at = NULL;
    long long rows = 0, stored_rows = 0;

    if (!PyArg_ParseTuple(args, "y*OO!nLO!O|O", &block, &link_obj, &PyDict_Type, &ordinal, &group_size,
                          &first_line, &PyList_Type, &groups_list, &counts_obj, &keys))
        return NULL;
    if (keys != Py_None && !PyList_CheckExact(keys)) {
        PyErr_SetString(PyExc_TypeError, "cut: keys must be a list or None");
        goto done;
    }
    if (PyObject_GetBuffer(counts_obj, &counts, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        goto done;
    if (counts.itemsize != (Py_ssize_t)sizeof(long long) || counts.format == NULL ||
        strcmp(counts.format, "q") != 0) {
        PyErr_SetString(PyExc_TypeError, "cut: counts must be an array('q')");
        goto done;
    }
    if (link_obj != Py_None) {
        link = PyLong_AsSsize_t(link_obj);
        if (link == -1 && PyErr_Occurred())
            goto done;
        if (link < 0) {
            PyErr_SetString(PyExc_ValueError, "cut: link must be None or a field position >= 0");
            goto done;
        }
    }
    if (group_size <= 0) {
        PyErr_SetString(PyExc_ValueError, "cut: group_size must be > 0");
        goto done;
    }
    if (first_line < 0) {
        PyErr_SetString(PyExc_ValueError, "cut: first_line must be >= 0");
        goto done;
    }
    /* strong references: a lookup may run Python code (a key's __eq__) that changes the list */
    ngroups = PyList_GET_SIZE(groups_list);
    if (counts.len / counts.itemsize != ngroups) {
        PyErr_SetString(PyExc_ValueError, "cut: counts must have one item per group");
        goto done;
    }
    groups = PyMem_Calloc(ngroups ? (size_t)ngroups : 1, sizeof(PyObject *));
    if (groups == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t g = 0; g < ngroups; g++) {
        PyObject *item = PyList_GET_ITEM(groups_list, g);
        if (!PyByteArray_CheckExact(item)) {
            PyErr_SetString(PyExc_TypeError, "cut: groups must be a list of bytearray");
            goto done;
        }
        Py_INCREF(item);
        groups[g] = item;
    }

    const char *start = block.buf;
    for (end = block.len; end > 0 && start[end - 1] != '\n'; end--)
        ;
    /* what goes to `stored` and `plain` is at most the block's whole lines */
    stored = PyBytes_FromStringAndSize(NULL, end);
    if (stored == NULL)
        goto done;
    stored_at = PyBytes_AS_STRING(stored);
    if (link < 0) {
        plain = PyBytes_FromStringAndSize(NULL, end);
        if (plain == NULL)
            goto done;
        plain_at = PyBytes_AS_STRING(plain);
    }
    long long *count = counts.buf;
    const char *at = start, *stop = start + end;
    long long line_no = first_line;
    /* the row before's link (inside `block`) and its subject number (-1: none) */
    const char *last_ref = NULL;
    Py_ssize_t last_len = 0, last_n = -1;
    while (at < stop) {
        const char *eol = memchr(at, '\n', (size_t)(stop - at)); /* never NULL: stop follows a '\n' */
        const char *ref, *ref_end, *row;
        if (link < 0) {
            const char *tab = memchr(at, '\t', (size_t)(eol - at));
            ref = at;
            ref_end = tab ? tab : eol;
            row = tab ? tab + 1 : eol;
            memcpy(plain_at, row, (size_t)(eol - row));
            plain_at += eol - row;
            *plain_at++ = '\n';
        } else {
            ref = at;
            for (Py_ssize_t f = 0; f < link; f++) {
                const char *tab = memchr(ref, '\t', (size_t)(eol - ref));
                if (tab == NULL) {
                    PyErr_Format(PyExc_ValueError, "cut: line %lld has no field %zd", line_no, link);
                    goto done;
                }
                ref = tab + 1;
            }
            ref_end = memchr(ref, '\t', (size_t)(eol - ref));
            if (ref_end == NULL)
                ref_end = eol;
            row = at;
        }
        Py_ssize_t ref_len = ref_end - ref, n = -2; /* -2: not known yet, -1: no subject */
        if (last_ref != NULL && ref_len == last_len && memcmp(ref, last_ref, (size_t)ref_len) == 0) {
            n = last_n;
        } else if (keys != Py_None && last_n >= 0 && last_n + 1 < PyList_GET_SIZE(keys)) {
            PyObject *next = PyList_GET_ITEM(keys, last_n + 1);
            if (PyBytes_CheckExact(next) && PyBytes_GET_SIZE(next) == ref_len &&
                memcmp(PyBytes_AS_STRING(next), ref, (size_t)ref_len) == 0)
                n = last_n + 1;
        }
        if (n == -2) {
            n = subject_of(ordinal, ref, ref_len);
            if (n == NEGATIVE)
                PyErr_Format(PyExc_ValueError, "cut: line %lld maps to a subject number out of range", line_no);
            if (n < -1)
                goto done;
        }
        last_ref = ref;
        last_len = ref_len;
        last_n = n;
        if (n == -1) {
            memcpy(stored_at, row, (size_t)(eol - row));
            stored_at += eol - row;
            *stored_at++ = '\n';
            stored_rows++;
        } else {
            if (n / group_size >= ngroups) {
                PyErr_Format(PyExc_ValueError, "cut: line %lld maps to a subject number out of range",
                             line_no);
                goto done;
            }
            Py_ssize_t g = n / group_size;
            PyObject *buffer = groups[g];
            Py_ssize_t row_len = eol - row, had = PyByteArray_GET_SIZE(buffer);
            if (row_len > PY_SSIZE_T_MAX - had - 43) {
                PyErr_SetString(PyExc_OverflowError, "cut: a subject group's buffer would overflow");
                goto done;
            }
            /* n and the line number: 20 digits each at most, two tabs, the newline */
            if (PyByteArray_Resize(buffer, had + row_len + 43) < 0)
                goto done;
            char *out = PyByteArray_AS_STRING(buffer) + had, *out0 = out;
            out += put_decimal(out, (unsigned long long)n);
            *out++ = '\t';
            out += put_decimal(out, (unsigned long long)line_no);
            *out++ = '\t';
            memcpy(out, row, (size_t)row_len);
            out += row_len;
            *out++ = '\n';
            /* a shrink within the allocation: no copy */
            if (PyByteArray_Resize(buffer, had + (out - out0)) < 0)
                goto done;
            count[g]++;
        }
        rows++;
        line_no++;
        at = eol + 1;
    }
    if (_PyBytes_Resize(&stored, stored_at - PyBytes_AS_STRING(stored)) < 0)
        goto done;
    if (plain != NULL && _PyBytes_Resize(&plain, plain_at - PyBytes_AS_STRING(plain)) < 0)
        goto done;
    result = Py_BuildValue("nLLOO", end, rows, stored_rows, stored, plain ? plain : Py_None);

done:
    Py_XDECREF(stored);
    Py_XDECREF(plain);
    if (groups != NULL) {
        for (Py_ssize_t g = 0; g < ngroups; g++)
            Py_XDECREF(groups[g]);
        PyMem_Free(groups);
    }
    if (counts.obj != NULL)
        PyBuffer_Release(&counts);
    PyBuffer_Release(&block);
    return result;
}

/* link_map(pairs, ordinal, keys=None) -> dict: `groupkeys.link_map_reference` in C. `pairs` is
 * COPY text of `value\tref` lines (`subjectkeys.mapping_sql`, lowest subject last); the result maps
 * each value to the subject number of its last line's ref, without `\N` and without a value whose
 * last ref is no subject. The refs come in subject order (descending), so with `keys` (as for
 * `cut`) the ref before or after the last one found is tried before the lookup. */
static PyObject *
link_map(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer pairs = {0};
    PyObject *ordinal, *keys = Py_None, *found = NULL;
    if (!PyArg_ParseTuple(args, "y*O!|O", &pairs, &PyDict_Type, &ordinal, &keys))
        return NULL;
    if (keys != Py_None && !PyList_CheckExact(keys)) {
        PyErr_SetString(PyExc_TypeError, "link_map: keys must be a list or None");
        goto fail;
    }
    const char *at = pairs.buf, *stop = at + pairs.len;
    if (pairs.len > 0 && stop[-1] != '\n') {
        PyErr_SetString(PyExc_ValueError, "link_map: the COPY text does not end with a whole line");
        goto fail;
    }
    found = PyDict_New();
    if (found == NULL)
        goto fail;
    const char *last_ref = NULL;
    Py_ssize_t last_len = 0, last_n = -1, line = 0;
    while (at < stop) {
        const char *eol = memchr(at, '\n', (size_t)(stop - at));
        const char *tab = memchr(at, '\t', (size_t)(eol - at));
        if (tab == NULL || memchr(tab + 1, '\t', (size_t)(eol - tab - 1)) != NULL) {
            PyErr_Format(PyExc_ValueError, "link_map: line %zd does not hold exactly two fields", line);
            goto fail;
        }
        const char *ref = tab + 1;
        Py_ssize_t ref_len = eol - ref, n = -2; /* -2: not known yet, -1: no subject */
        if (last_ref != NULL && ref_len == last_len && memcmp(ref, last_ref, (size_t)ref_len) == 0) {
            n = last_n;
        } else if (keys != Py_None && last_n >= 0) {
            for (Py_ssize_t m = last_n - 1; m <= last_n + 1; m += 2) {
                if (m < 0 || m >= PyList_GET_SIZE(keys))
                    continue;
                PyObject *guess = PyList_GET_ITEM(keys, m);
                if (PyBytes_CheckExact(guess) && PyBytes_GET_SIZE(guess) == ref_len &&
                    memcmp(PyBytes_AS_STRING(guess), ref, (size_t)ref_len) == 0) {
                    n = m;
                    break;
                }
            }
        }
        if (n == -2) {
            n = subject_of(ordinal, ref, ref_len);
            if (n == NEGATIVE)
                PyErr_Format(PyExc_ValueError, "link_map: line %zd maps to a negative subject number", line);
            if (n < -1)
                goto fail;
        }
        last_ref = ref;
        last_len = ref_len;
        last_n = n;
        Py_ssize_t value_len = tab - at;
        if (!(value_len == 2 && at[0] == '\\' && at[1] == 'N')) {
            PyObject *value = PyBytes_FromStringAndSize(at, value_len);
            if (value == NULL)
                goto fail;
            int failed;
            if (n >= 0) {
                PyObject *number = PyLong_FromSsize_t(n);
                failed = number == NULL || PyDict_SetItem(found, value, number) < 0;
                Py_XDECREF(number);
            } else { /* the last line of a value wins, also when its ref is no subject */
                failed = PyDict_DelItem(found, value) < 0;
                if (failed && PyErr_ExceptionMatches(PyExc_KeyError)) {
                    PyErr_Clear();
                    failed = 0;
                }
            }
            Py_DECREF(value);
            if (failed)
                goto fail;
        }
        line++;
        at = eol + 1;
    }
    PyBuffer_Release(&pairs);
    return found;

fail:
    Py_XDECREF(found);
    PyBuffer_Release(&pairs);
    return NULL;
}

static PyMethodDef methods[] = {
    {"cut", cut, METH_VARARGS,
     "cut(block, link, ordinal, group_size, first_line, groups, counts, keys=None) -> (end, rows, "
     "stored_rows, "
     "stored, plain): format 7's row cut (see groupkeys.cut_reference)"},
    {"link_map", link_map, METH_VARARGS,
     "link_map(pairs, ordinal, keys=None) -> dict: a link map (see groupkeys.link_map_reference)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_dereg_cut",
    .m_doc = "Format 7's row cut in C (dereg.backup.groupkeys).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__dereg_cut(void)
{
    return PyModule_Create(&module);
}
