/* The framer's hot path in C: Framer.frame_lines over raw lines, as an iterator.
 *
 * It does exactly what postwatch/parse/syslog.py's Framer.frame_lines does with the raw
 * lines' endings stripped (rstrip("\r\n")): a traditional stamp and a "host tag[pid]" head
 * that the framer's caches already hold make a LogLine here; a stamp missing from the cache
 * is computed by the framer's own _traditional, a head by _split_head, and every other line
 * is framed by the framer's __call__.  The caches and the year stay the framer's: this only
 * reads them (and fills the head cache as frame_lines does), so both paths give the same
 * LogLines in the same state.  tests/test_framing.py holds them to that.
 *
 * Nothing here looks into the message after the first ": " past the head: that is
 * attacker text and is only sliced off.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *lines;       /* iterator of raw text lines */
    PyObject *framer;      /* the Framer: __call__ for every line the hot path leaves */
    PyObject *origin;
    PyObject *cache;       /* framer._cache: stamp -> aware datetime */
    PyObject *minutes;     /* framer._minutes: "Mmm dd hh:mm" -> its first second */
    PyObject *seconds;     /* syslog._SECONDS: timedelta(seconds=0..60) */
    PyObject *heads;       /* framer._heads: "host tag[pid]" -> (host, program, pid, ok) */
    PyObject *traditional; /* bound framer._traditional(stamp, month) */
    PyObject *split_head;  /* syslog._split_head(head) */
    PyObject *months;      /* syslog.MONTHS: "Jan" -> 1 */
    PyTypeObject *logline; /* records.LogLine */
    Py_ssize_t cache_limit;
    Py_ssize_t head_end;
    Py_ssize_t lineno;
} FrameStream;

static PyObject *str_colon_space;   /* ": " */
static PyObject *str_last_ts;       /* "_last_ts" */
static PyObject *str_last_month;    /* "_last_month" */

static void
stream_dealloc(FrameStream *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->lines);
    Py_CLEAR(self->framer);
    Py_CLEAR(self->origin);
    Py_CLEAR(self->cache);
    Py_CLEAR(self->minutes);
    Py_CLEAR(self->seconds);
    Py_CLEAR(self->heads);
    Py_CLEAR(self->traditional);
    Py_CLEAR(self->split_head);
    Py_CLEAR(self->months);
    Py_CLEAR(self->logline);
    PyObject_GC_Del(self);
}

static int
stream_traverse(FrameStream *self, visitproc visit, void *arg)
{
    Py_VISIT(self->lines);
    Py_VISIT(self->framer);
    Py_VISIT(self->origin);
    Py_VISIT(self->cache);
    Py_VISIT(self->minutes);
    Py_VISIT(self->seconds);
    Py_VISIT(self->heads);
    Py_VISIT(self->traditional);
    Py_VISIT(self->split_head);
    Py_VISIT(self->months);
    Py_VISIT(self->logline);
    return 0;
}

static PyTypeObject FrameStreamType;

static PyObject *
stream_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *lines, *framer, *origin, *cache, *minutes, *seconds, *heads, *traditional;
    PyObject *split_head, *months, *logline;
    Py_ssize_t cache_limit, head_end, first_lineno;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "FrameStream takes positional arguments only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OUOO!O!O!O!OOO!O!nnn:FrameStream", &lines, &origin, &framer,
                          &PyDict_Type, &cache, &PyDict_Type, &minutes, &PyList_Type, &seconds,
                          &PyDict_Type, &heads, &traditional, &split_head, &PyDict_Type, &months,
                          &PyType_Type, &logline, &cache_limit, &head_end, &first_lineno))
        return NULL;
    if (PyList_GET_SIZE(seconds) != 61) {
        PyErr_SetString(PyExc_ValueError, "seconds must hold 61 timedeltas");
        return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)logline, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "LogLine must be a tuple type");
        return NULL;
    }
    PyObject *iterator = PyObject_GetIter(lines);
    if (iterator == NULL)
        return NULL;
    FrameStream *self = PyObject_GC_New(FrameStream, type);
    if (self == NULL) {
        Py_DECREF(iterator);
        return NULL;
    }
    self->lines = iterator;
    self->framer = Py_NewRef(framer);
    self->origin = Py_NewRef(origin);
    self->cache = Py_NewRef(cache);
    self->minutes = Py_NewRef(minutes);
    self->seconds = Py_NewRef(seconds);
    self->heads = Py_NewRef(heads);
    self->traditional = Py_NewRef(traditional);
    self->split_head = Py_NewRef(split_head);
    self->months = Py_NewRef(months);
    self->logline = (PyTypeObject *)Py_NewRef(logline);
    self->cache_limit = cache_limit;
    self->head_end = head_end;
    self->lineno = first_lineno - 1;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* raw.rstrip("\r\n"): a new reference */
static PyObject *
strip_ending(PyObject *raw)
{
    Py_ssize_t end = PyUnicode_GET_LENGTH(raw);
    int kind = PyUnicode_KIND(raw);
    const void *data = PyUnicode_DATA(raw);
    while (end > 0) {
        Py_UCS4 c = PyUnicode_READ(kind, data, end - 1);
        if (c != '\n' && c != '\r')
            break;
        end--;
    }
    if (end == PyUnicode_GET_LENGTH(raw))
        return Py_NewRef(raw);
    return PyUnicode_Substring(raw, 0, end);
}

/* Put value (a new reference) under key in one of the framer's caches, emptied first when
 * full as the framer empties it: value, or NULL (value released) on error. */
static PyObject *
cache_put(PyObject *cache, PyObject *key, PyObject *value, Py_ssize_t limit)
{
    if (PyDict_GET_SIZE(cache) >= limit)
        PyDict_Clear(cache);
    if (PyDict_SetItem(cache, key, value) < 0)
        Py_CLEAR(value);
    return value;
}

/* A new second of a minute the framer has seen, in the month it is in (no year to move):
 * what _traditional computes, cached as it does; NULL without an error when _traditional
 * must do it. */
static PyObject *
same_minute(FrameStream *self, PyObject *stamp, PyObject *month)
{
    PyObject *last = PyObject_GetAttr(self->framer, str_last_month);
    if (last == NULL)
        return NULL;
    int same = PyObject_RichCompareBool(last, month, Py_EQ);
    Py_DECREF(last);
    if (same <= 0)
        return NULL;
    Py_UCS4 tens = PyUnicode_READ_CHAR(stamp, 13), units = PyUnicode_READ_CHAR(stamp, 14);
    if (tens < '0' || tens > '9' || units < '0' || units > '9')
        return NULL;
    Py_ssize_t second = (tens - '0') * 10 + (units - '0');
    if (second > 60)
        return NULL;
    PyObject *minute = PyUnicode_Substring(stamp, 0, 12);
    if (minute == NULL)
        return NULL;
    PyObject *start = PyDict_GetItemWithError(self->minutes, minute);
    Py_DECREF(minute);
    if (start == NULL)
        return NULL;
    PyObject *when = PyNumber_Add(start, PyList_GET_ITEM(self->seconds, second));
    if (when == NULL)
        return NULL;
    return cache_put(self->cache, stamp, when, self->cache_limit);
}

/* The stamp's datetime, as frame_lines finds it: a new reference, Py_None when there is
 * none, NULL on error. */
static PyObject *
stamp_time(FrameStream *self, PyObject *text, PyObject *stamp)
{
    /* "Nov 23 10:00:00.123456 ..." shares its first 15 characters with a cached stamp */
    if (PyUnicode_GET_LENGTH(text) < 16 || PyUnicode_READ_CHAR(text, 15) != ' ')
        Py_RETURN_NONE;
    PyObject *ts = PyDict_GetItemWithError(self->cache, stamp);
    if (ts != NULL)
        return Py_NewRef(ts);
    if (PyErr_Occurred())
        return NULL;
    PyObject *name = PyUnicode_Substring(text, 0, 3);
    if (name == NULL)
        return NULL;
    PyObject *month = PyDict_GetItemWithError(self->months, name);
    Py_DECREF(name);
    if (month == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *when = same_minute(self, stamp, month);
    if (when != NULL || PyErr_Occurred())
        return when;
    return PyObject_CallFunctionObjArgs(self->traditional, stamp, month, NULL);
}

/* The cached split of ``head`` (a new reference), splitting and caching it first when it
 * is new; NULL on error. */
static PyObject *
split_head(FrameStream *self, PyObject *head_text)
{
    PyObject *head = PyDict_GetItemWithError(self->heads, head_text);
    if (head != NULL)
        return Py_NewRef(head);
    if (PyErr_Occurred())
        return NULL;
    head = PyObject_CallOneArg(self->split_head, head_text);
    if (head == NULL)
        return NULL;
    if (!PyTuple_CheckExact(head) || PyTuple_GET_SIZE(head) != 4) {
        Py_DECREF(head);
        PyErr_SetString(PyExc_TypeError, "_split_head must return a 4-tuple");
        return NULL;
    }
    return cache_put(self->heads, head_text, head, self->cache_limit);
}

/* The LogLine of one stripped line through the hot path; Py_None when __call__ must frame
 * it; NULL on error. */
static PyObject *
frame_hot(FrameStream *self, PyObject *text, PyObject *lineno)
{
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    PyObject *stamp = PyUnicode_Substring(text, 0, length < 15 ? length : 15);
    if (stamp == NULL)
        return NULL;
    PyObject *ts = stamp_time(self, text, stamp);
    Py_DECREF(stamp);
    if (ts == NULL || ts == Py_None)
        return ts;
    Py_ssize_t colon = length > 16 ? PyUnicode_Find(text, str_colon_space, 16, length, 1) : -1;
    if (colon == -2) {
        Py_DECREF(ts);
        return NULL;
    }
    if (colon <= 0 || colon > self->head_end) {
        Py_DECREF(ts);
        Py_RETURN_NONE;
    }
    PyObject *head_text = PyUnicode_Substring(text, 16, colon);
    if (head_text == NULL) {
        Py_DECREF(ts);
        return NULL;
    }
    PyObject *head = split_head(self, head_text);
    Py_DECREF(head_text);
    if (head == NULL) {
        Py_DECREF(ts);
        return NULL;
    }
    if (PyTuple_GET_ITEM(head, 3) != Py_True) {
        Py_DECREF(head);
        Py_DECREF(ts);
        Py_RETURN_NONE;
    }
    PyObject *message = NULL, *line = NULL;
    if (PyObject_SetAttr(self->framer, str_last_ts, ts) < 0
        || (message = PyUnicode_Substring(text, colon + 2, length)) == NULL
        /* tuple.__new__(LogLine, (...)): a LogLine has no fields beyond its items */
        || (line = self->logline->tp_alloc(self->logline, 7)) == NULL) {
        Py_DECREF(head);
        Py_DECREF(ts);
        Py_XDECREF(message);
        return NULL;
    }
    PyTuple_SET_ITEM(line, 0, ts);
    PyTuple_SET_ITEM(line, 1, Py_NewRef(PyTuple_GET_ITEM(head, 0)));
    PyTuple_SET_ITEM(line, 2, Py_NewRef(PyTuple_GET_ITEM(head, 1)));
    PyTuple_SET_ITEM(line, 3, Py_NewRef(PyTuple_GET_ITEM(head, 2)));
    PyTuple_SET_ITEM(line, 4, message);
    PyTuple_SET_ITEM(line, 5, Py_NewRef(self->origin));
    PyTuple_SET_ITEM(line, 6, Py_NewRef(lineno));
    Py_DECREF(head);
    return line;
}

static PyObject *
stream_next(FrameStream *self)
{
    PyObject *raw = PyIter_Next(self->lines);
    if (raw == NULL)
        return NULL; /* the end, or the reader's error */
    if (!PyUnicode_Check(raw)) {
        PyErr_Format(PyExc_TypeError, "lines must be str, not %.100s", Py_TYPE(raw)->tp_name);
        Py_DECREF(raw);
        return NULL;
    }
    PyObject *text = strip_ending(raw);
    Py_DECREF(raw);
    if (text == NULL)
        return NULL;
    PyObject *lineno = PyLong_FromSsize_t(++self->lineno);
    if (lineno == NULL) {
        Py_DECREF(text);
        return NULL;
    }
    PyObject *line = frame_hot(self, text, lineno);
    if (line == Py_None) {
        Py_DECREF(line);
        line = PyObject_CallFunctionObjArgs(self->framer, text, lineno, self->origin, NULL);
    }
    Py_DECREF(text);
    Py_DECREF(lineno);
    return line;
}

static PyTypeObject FrameStreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "postwatch.parse._framing.FrameStream",
    .tp_basicsize = sizeof(FrameStream),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "FrameStream(lines, origin, framer, cache, minutes, seconds, heads, traditional, "
              "split_head, months, LogLine, cache_limit, head_end, first_lineno): "
              "Framer.frame_lines over raw lines.",
    .tp_new = stream_new,
    .tp_dealloc = (destructor)stream_dealloc,
    .tp_traverse = (traverseproc)stream_traverse,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)stream_next,
};

static struct PyModuleDef framing_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "postwatch.parse._framing",
    .m_doc = "The framer's hot path in C (optional: syslog.py works without it).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__framing(void)
{
    if (PyType_Ready(&FrameStreamType) < 0)
        return NULL;
    str_colon_space = PyUnicode_InternFromString(": ");
    str_last_ts = PyUnicode_InternFromString("_last_ts");
    str_last_month = PyUnicode_InternFromString("_last_month");
    if (str_colon_space == NULL || str_last_ts == NULL || str_last_month == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&framing_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "FrameStream", (PyObject *)&FrameStreamType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
