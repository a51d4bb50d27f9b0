/* The parser's most common shapes in C: Shapes(line) -> event, or None.
 *
 * Nearly every line of a busy server's log is one of a few shapes: smtpd's
 * "connect from", "disconnect from" (counters already seen), "TLS connection established",
 * "QID: client=" (without or with a plain SASL login), qmgr's "removed" and "queue active",
 * cleanup's "message-id=" and header/body check actions, a delivery agent's "to=<...>,
 * relay=..., status=...", postscreen's "CONNECT from" and "PASS OLD|NEW", and Dovecot's
 * logins and mail session lines (imap-login, lmtp, imap: a process the Python parser has
 * already described).  For
 * those this builds the event the Python parser would build, with the same fields, without
 * a regular expression.  It claims a line only when it has followed the Python pattern's
 * match to the end, character class by character class; for anything else (another shape,
 * a quote in an address, a non-ASCII digit, a field out of order) it returns None and the
 * Python parser decides.  tests/test_parse_shapes.py holds the two to the same events on
 * every real line and on hostile variants of them.
 *
 * Attacker text (addresses, SASL login names, header texts, reply texts) is only sliced,
 * never interpreted (but for the "queued as NEXT" that queue.py also reads in a reply): the
 * fields around it are found where Postfix and Dovecot write them, as the patterns in
 * smtpd.py, queue.py, envelope.py and dovecot.py find them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

enum {
    CONNECT, DISCONNECT, TLS, CLIENT, REMOVED, QUEUE_ACTIVE, MESSAGE_ID, DELIVERY, VERDICT,
    SESSION, CONTENT, LOGIN, KINDS
};

typedef struct {
    PyObject_HEAD
    PyTypeObject *types[KINDS]; /* the event classes, in the order above */
    PyObject *counters;         /* smtpd.COUNTERS: disconnect tail -> counters */
    PyObject *components;       /* dovecot.COMPONENTS: "lmtp(123)" -> what it is */
    PyObject *levels;           /* dovecot.LEVELS: "Info" -> "info" */
} Shapes;

typedef struct {
    PyObject *str;
    int kind;
    const void *data;
    Py_ssize_t len;
} Text;

#define CH(t, i) PyUnicode_READ((t)->kind, (t)->data, (i))
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

static PyObject *empty;   /* "" */

static Text
text_of(PyObject *str)
{
    Text t = {str, PyUnicode_KIND(str), PyUnicode_DATA(str), PyUnicode_GET_LENGTH(str)};
    return t;
}

/* Whether the ASCII literal lit is at t[i:]. */
static int
at(const Text *t, Py_ssize_t i, const char *lit)
{
    Py_ssize_t n = (Py_ssize_t)strlen(lit);
    if (i < 0 || i + n > t->len)
        return 0;
    for (Py_ssize_t k = 0; k < n; k++)
        if (CH(t, i + k) != (Py_UCS4)(unsigned char)lit[k])
            return 0;
    return 1;
}

/* ASCII digits from i, at most max of them (more: -1); the count. */
static Py_ssize_t
digits(const Text *t, Py_ssize_t i, Py_ssize_t max)
{
    Py_ssize_t n = 0;
    while (i + n < t->len && IS_DIGIT(CH(t, i + n)))
        n++;
    return n > max ? -1 : n;
}

static long long
number(const Text *t, Py_ssize_t i, Py_ssize_t n)
{
    long long value = 0;
    for (Py_ssize_t k = 0; k < n; k++)
        value = value * 10 + (long long)(CH(t, i + k) - '0');
    return value;
}

/* [chars]+ from i, chars being ASCII */
static Py_ssize_t
run_of(const Text *t, Py_ssize_t i, const char *chars)
{
    while (i < t->len && CH(t, i) && CH(t, i) < 128 && strchr(chars, (int)CH(t, i)) != NULL)
        i++;
    return i;
}

/* [^\s\[\]]* from i: where the run ends. */
static Py_ssize_t
name_run(const Text *t, Py_ssize_t i)
{
    while (i < t->len) {
        Py_UCS4 c = CH(t, i);
        if (c == '[' || c == ']' || Py_UNICODE_ISSPACE(c))
            break;
        i++;
    }
    return i;
}

/* CLIENT without its port, name[addr], from i: the end of "]" (or -1); the spans. */
static Py_ssize_t
client_at(const Text *t, Py_ssize_t i, Py_ssize_t span[4])
{
    span[0] = i;
    span[1] = name_run(t, i);
    if (span[1] >= t->len || CH(t, span[1]) != '[')
        return -1;
    span[2] = span[1] + 1;
    span[3] = name_run(t, span[2]);
    if (span[3] >= t->len || CH(t, span[3]) != ']')
        return -1;
    return span[3] + 1;
}

/* CLIENT's (?::(\d{1,15}))? at i where the pattern wants `then` (or the end, when NULL)
 * next: the position after the port (i without one), or -1 when the pattern fails there. */
static Py_ssize_t
port_then(const Text *t, Py_ssize_t i, const char *then, Py_ssize_t *port, Py_ssize_t *port_len)
{
    *port_len = 0;
    if (i + 1 < t->len && CH(t, i) == ':' && IS_DIGIT(CH(t, i + 1))) {
        Py_ssize_t n = digits(t, i + 1, 15);
        if (n < 0)
            return -1;
        Py_ssize_t after = i + 1 + n;
        if (then == NULL ? after == t->len : at(t, after, then)) {
            *port = i + 1;
            *port_len = n;
            return after;
        }
    }
    if (then == NULL ? i == t->len : at(t, i, then))
        return i;
    return -1;
}

static PyObject *
slice(const Text *t, Py_ssize_t start, Py_ssize_t end)
{
    return PyUnicode_Substring(t->str, start, end);
}

static PyObject *
port_value(const Text *t, Py_ssize_t port, Py_ssize_t port_len)
{
    return port_len ? PyLong_FromLongLong(number(t, port, port_len)) : Py_NewRef(Py_None);
}

/* An event of type with the n fields in items (new references, NULL for a failure). */
static PyObject *
build(PyTypeObject *type, PyObject **items, Py_ssize_t n)
{
    PyObject *event = NULL;
    for (Py_ssize_t k = 0; k < n; k++)
        if (items[k] == NULL)
            goto fail;
    event = type->tp_alloc(type, n);
    if (event == NULL)
        goto fail;
    for (Py_ssize_t k = 0; k < n; k++)
        PyTuple_SET_ITEM(event, k, items[k]);
    return event;
fail:
    for (Py_ssize_t k = 0; k < n; k++)
        Py_XDECREF(items[k]);
    return NULL;
}

/* (?:(QUEUE_ID)|NOQUEUE): at the start; the ID's end (its ": " follows), 0 for NOQUEUE or
 * no ID.  QUEUE_ID is [0-9A-F]{6,} or the long form (envelope.py). */
static int
base52(Py_UCS4 c)
{
    if (IS_DIGIT(c))
        return 1;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
        return strchr("AEIOUaeiou", (int)c) == NULL;
    return 0;
}

static int
is_hex_upper(Py_UCS4 c)
{
    return IS_DIGIT(c) || (c >= 'A' && c <= 'F');
}

static int
is_queue_id(const Text *t, Py_ssize_t start, Py_ssize_t end)
{
    Py_ssize_t i = start;
    while (i < end && is_hex_upper(CH(t, i)))
        i++;
    if (i == end && end - start >= 6)
        return 1;
    if (end - start < 12 || CH(t, start + 10) != 'z')
        return 0;
    for (i = start; i < start + 10; i++)
        if (!base52(CH(t, i)))
            return 0;
    for (i = start + 11; i < end; i++)
        if (!base52(CH(t, i)) || CH(t, i) == 'z')
            return 0;
    return 1;
}

static Py_ssize_t
queue_id_end(const Text *t)
{
    Py_ssize_t i = 0;
    while (i < t->len && is_hex_upper(CH(t, i)))
        i++;
    if (i >= 6 && at(t, i, ": "))
        return i;
    i = 0;
    while (i < t->len && base52(CH(t, i)))
        i++;
    /* the long form is ten base-52 digits, "z", then base-51 digits: the run above swallows
     * the "z" and stops at the ": " */
    if (i >= 12 && at(t, i, ": ") && is_queue_id(t, 0, i))
        return i;
    return 0;
}

/* --- smtpd ---------------------------------------------------------------------------- */

/* connect from {CLIENT}\Z */
static PyObject *
connect(Shapes *self, PyObject *line, const Text *m)
{
    Py_ssize_t span[4], port = 0, port_len, i;
    if (!at(m, 0, "connect from ") || (i = client_at(m, 13, span)) < 0
        || port_then(m, i, NULL, &port, &port_len) < 0)
        return NULL;
    PyObject *items[] = {
        Py_NewRef(line), slice(m, span[0], span[1]), slice(m, span[2], span[3]),
        port_value(m, port, port_len),
    };
    return build(self->types[CONNECT], items, 4);
}

/* disconnect from {CLIENT}(.*)\Z, for a counter text the Python parser has already read */
static PyObject *
disconnect(Shapes *self, PyObject *line, const Text *m)
{
    Py_ssize_t span[4], i;
    if (!at(m, 0, "disconnect from ") || (i = client_at(m, 16, span)) < 0)
        return NULL;
    if (i + 1 < m->len && CH(m, i) == ':' && IS_DIGIT(CH(m, i + 1))) {
        Py_ssize_t n = 0;  /* \d{1,15}, greedy: the tail starts after at most 15 */
        while (n < 15 && i + 1 + n < m->len && IS_DIGIT(CH(m, i + 1 + n)))
            n++;
        i += 1 + n;
    }
    PyObject *tail = slice(m, i, m->len);
    if (tail == NULL)
        return NULL;
    PyObject *counters = PyDict_GetItemWithError(self->counters, tail);
    Py_DECREF(tail);
    if (counters == NULL)
        return NULL;
    PyObject *items[] = {
        Py_NewRef(line), slice(m, span[0], span[1]), slice(m, span[2], span[3]),
        Py_NewRef(counters),
    };
    return build(self->types[DISCONNECT], items, 4);
}

/* \S+ from i: the end of the run (i when empty) */
static Py_ssize_t
token_end(const Text *t, Py_ssize_t i)
{
    while (i < t->len && !Py_UNICODE_ISSPACE(CH(t, i)))
        i++;
    return i;
}

static const char *TRUST[] = {"Anonymous", "Trusted", "Verified", "Untrusted"};

/* (?:(Anonymous|Trusted|Verified|Untrusted) )?TLS connection established (from|to)
 * {CLIENT}: (\S+) with cipher (\S+) */
static PyObject *
tls(Shapes *self, PyObject *line, const Text *m)
{
    Py_ssize_t i = 0, trust = 0, span[4], port = 0, port_len;
    for (int k = 0; k < 4; k++) {
        Py_ssize_t n = (Py_ssize_t)strlen(TRUST[k]);
        if (at(m, 0, TRUST[k]) && at(m, n, " ")) {
            trust = n;
            i = n + 1;
            break;
        }
    }
    if (!at(m, i, "TLS connection established "))
        return NULL;
    i += 27;
    Py_ssize_t direction = i;
    if (at(m, i, "from "))
        i += 5;
    else if (at(m, i, "to "))
        i += 3;
    else
        return NULL;
    Py_ssize_t direction_end = i - 1;
    i = client_at(m, i, span);
    if (i < 0 || (i = port_then(m, i, ": ", &port, &port_len)) < 0)
        return NULL;
    Py_ssize_t protocol = i + 2, protocol_end = token_end(m, protocol);
    if (protocol_end == protocol || !at(m, protocol_end, " with cipher "))
        return NULL;
    Py_ssize_t cipher = protocol_end + 13, cipher_end = token_end(m, cipher);
    if (cipher_end == cipher)
        return NULL;
    PyObject *items[] = {
        Py_NewRef(line), trust ? slice(m, 0, trust) : Py_NewRef(empty),
        slice(m, direction, direction_end), slice(m, span[0], span[1]),
        slice(m, span[2], span[3]), slice(m, protocol, protocol_end),
        slice(m, cipher, cipher_end),
    };
    return build(self->types[TLS], items, 7);
}

/* QID: client={CLIENT}, alone or with (?:, sasl_method=([^\s,]*))?, sasl_username=([^,]*)\Z */
static PyObject *
client(Shapes *self, PyObject *line, const Text *m, Py_ssize_t qid_end)
{
    Py_ssize_t start = qid_end + 2, span[4], port = 0, port_len;
    if (!at(m, start, "client="))
        return NULL;
    Py_ssize_t i = client_at(m, start + 7, span);
    if (i < 0)
        return NULL;
    if (i + 1 < m->len && CH(m, i) == ':' && IS_DIGIT(CH(m, i + 1))) {
        Py_ssize_t n = digits(m, i + 1, 15);
        if (n < 0)
            return NULL;
        port = i + 1;
        port_len = n;
        i += 1 + n;
    }
    else
        port_len = 0;
    PyObject *method = NULL, *username = NULL;
    if (i < m->len) {
        Py_ssize_t method_start = 0, method_end = 0;
        if (at(m, i, ", sasl_method=")) {
            method_start = method_end = i + 14;
            while (method_end < m->len) {
                Py_UCS4 c = CH(m, method_end);
                if (c == ',' || Py_UNICODE_ISSPACE(c))
                    break;
                method_end++;
            }
            i = method_end;
        }
        if (!at(m, i, ", sasl_username="))
            return NULL;
        for (Py_ssize_t k = i + 16; k < m->len; k++)
            if (CH(m, k) == ',')
                return NULL;
        method = method_start ? slice(m, method_start, method_end) : Py_NewRef(empty);
        username = slice(m, i + 16, m->len);
    }
    PyObject *items[] = {
        Py_NewRef(line), slice(m, 0, qid_end), slice(m, span[0], span[1]),
        slice(m, span[2], span[3]), port_value(m, port, port_len),
        method ? method : Py_NewRef(empty), username ? username : Py_NewRef(empty),
        Py_NewRef(empty), Py_NewRef(empty), Py_NewRef(empty),
    };
    return build(self->types[CLIENT], items, 10);
}

static PyObject *
smtpd(Shapes *self, PyObject *line, const Text *m)
{
    if (m->len == 0)
        return NULL;
    Py_UCS4 first = CH(m, 0);
    if (first == 'c')
        return connect(self, line, m);
    if (first == 'd')
        return disconnect(self, line, m);
    if ((first == 'A' && at(m, 0, "Anonymous TLS ")) || (first == 'T' && at(m, 0, "TLS "))
        || (first == 'T' && at(m, 0, "Trusted TLS ")) || (first == 'V' && at(m, 0, "Verified TLS "))
        || (first == 'U' && at(m, 0, "Untrusted TLS ")))
        return tls(self, line, m);
    if (!(IS_DIGIT(first) || (first >= 'A' && first <= 'Z')))
        return NULL;  /* smtpd.py tries its other patterns first on lower-case starts */
    Py_ssize_t qid_end = queue_id_end(m);
    return qid_end ? client(self, line, m, qid_end) : NULL;
}

/* --- qmgr, cleanup -------------------------------------------------------------------- */

static PyObject *
qmgr(Shapes *self, PyObject *line, const Text *m, Py_ssize_t qid_end)
{
    Py_ssize_t rest = qid_end + 2;
    if (m->len - rest == 7 && at(m, rest, "removed")) {
        PyObject *items[] = {Py_NewRef(line), slice(m, 0, qid_end)};
        return build(self->types[REMOVED], items, 2);
    }
    /* from=<s>, size=(\d{1,15}), nrcpt=(\d{1,15}) \(queue active\)\Z, the sender being
     * everything up to the last ", size=" */
    if (!at(m, rest, "from=") || m->len - rest < 20 || !at(m, m->len - 15, " (queue active)"))
        return NULL;
    Py_ssize_t cut = m->len - 7;
    while (cut > rest && !at(m, cut, ", size="))
        cut--;
    if (cut <= rest)
        return NULL;
    Py_ssize_t size = cut + 7, size_len = digits(m, size, 15);
    if (size_len <= 0 || !at(m, size + size_len, ", nrcpt="))
        return NULL;
    Py_ssize_t nrcpt = size + size_len + 8, nrcpt_len = digits(m, nrcpt, 15);
    if (nrcpt_len <= 0 || nrcpt + nrcpt_len != m->len - 15)
        return NULL;
    Py_ssize_t sender = rest + 5, sender_end = cut;
    if (sender_end - sender >= 2 && CH(m, sender) == '<' && CH(m, sender_end - 1) == '>') {
        sender++;
        sender_end--;
    }
    PyObject *items[] = {
        Py_NewRef(line), slice(m, 0, qid_end), slice(m, sender, sender_end),
        PyLong_FromLongLong(number(m, size, size_len)),
        PyLong_FromLongLong(number(m, nrcpt, nrcpt_len)),
    };
    return build(self->types[QUEUE_ACTIVE], items, 5);
}

/* <[^"<>]*> at i (after "to=" or "orig_to="): the address's end (its ">"), or -1 */
static Py_ssize_t
address_end(const Text *t, Py_ssize_t i)
{
    for (; i < t->len; i++) {
        Py_UCS4 c = CH(t, i);
        if (c == '>')
            return i;
        if (c == '<' || c == '"')
            return -1;
    }
    return -1;
}

/* str.find and str.rfind: the first (last) i with the ASCII literal lit wholly in
 * t[from:end], or -1. */
static Py_ssize_t
find(const Text *t, Py_ssize_t from, Py_ssize_t end, const char *lit)
{
    Py_ssize_t n = (Py_ssize_t)strlen(lit);
    for (Py_ssize_t i = from; i + n <= end; i++)
        if (at(t, i, lit))
            return i;
    return -1;
}

static Py_ssize_t
rfind(const Text *t, Py_ssize_t from, Py_ssize_t end, const char *lit)
{
    for (Py_ssize_t i = end - (Py_ssize_t)strlen(lit); i >= from; i--)
        if (at(t, i, lit))
            return i;
    return -1;
}

static const char *TAIL_KEYS[] = {"from=<", "to=<", "proto=", "helo=<"};

/* The first "; (?:from=<|to=<|proto=|helo=<)" at or after i (-1), its end in *end. */
static Py_ssize_t
tail_start(const Text *t, Py_ssize_t i, Py_ssize_t *end)
{
    for (; i + 1 < t->len; i++) {
        if (CH(t, i) != ';' || CH(t, i + 1) != ' ')
            continue;
        for (int k = 0; k < 4; k++) {
            if (at(t, i + 2, TAIL_KEYS[k])) {
                *end = i + 2 + (Py_ssize_t)strlen(TAIL_KEYS[k]);
                return i;
            }
        }
    }
    return -1;
}

/* QID: ACTION: (header|body) TEXT from name[addr]; from=<s> to=<r> proto=P helo=<h>: RULE,
 * queue.content_action's reading: one tail, no quote in it, no tail keyword before it
 * (anything else, attacker text imitating Postfix's fields included, is Python's) */
static PyObject *
content(Shapes *self, PyObject *line, const Text *m, Py_ssize_t qid_end)
{
    Py_ssize_t action = qid_end + 2, i = action;
    if (at(m, i, "milter-"))
        return NULL;  /* a milter verdict's pattern comes first */
    for (;;) {  /* [a-z]+(?:-[a-z]+)* */
        Py_ssize_t run = i;
        while (i < m->len && CH(m, i) >= 'a' && CH(m, i) <= 'z')
            i++;
        if (i == run)
            return NULL;
        if (!at(m, i, "-"))
            break;
        i++;
    }
    Py_ssize_t action_end = i, part = i + 2, part_end;
    if (!at(m, i, ": "))
        return NULL;
    if (at(m, part, "header "))
        part_end = part + 6;
    else if (at(m, part, "body "))
        part_end = part + 4;
    else
        return NULL;
    Py_ssize_t text = part_end + 1, keys_end, start = tail_start(m, text, &keys_end), unused;
    if (start < 0 || tail_start(m, keys_end, &unused) >= 0 || find(m, start, m->len, "\"") >= 0
        || find(m, text, start, " to=<") >= 0 || find(m, text, start, " proto=") >= 0
        || find(m, text, start, " helo=<") >= 0)
        return NULL;
    /* ;(?: from=<a>)?(?: to=<a>)?(?: proto=([A-Za-z0-9]+))?(?: helo=<([^<>]*)>)?(?:: (.*))?\Z */
    Py_ssize_t s[2] = {0, 0}, r[2] = {0, 0}, p[2] = {0, 0}, h[2] = {0, 0}, x[2] = {0, 0};
    i = start + 1;
    if (at(m, i, " from=<")) {
        s[0] = i + 7;
        if ((s[1] = address_end(m, s[0])) < 0)
            return NULL;
        i = s[1] + 1;
    }
    if (at(m, i, " to=<")) {
        r[0] = i + 5;
        if ((r[1] = address_end(m, r[0])) < 0)
            return NULL;
        i = r[1] + 1;
    }
    if (at(m, i, " proto=")) {
        p[0] = i + 7;
        p[1] = run_of(m, p[0], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
        if (p[1] == p[0])
            return NULL;
        i = p[1];
    }
    if (at(m, i, " helo=<")) {
        h[0] = h[1] = i + 7;
        while (h[1] < m->len && CH(m, h[1]) != '<' && CH(m, h[1]) != '>')
            h[1]++;
        if (!at(m, h[1], ">"))
            return NULL;
        i = h[1] + 1;
    }
    if (at(m, i, ": ")) {
        x[0] = i + 2;
        x[1] = m->len;
    }
    else if (i != m->len)
        return NULL;
    /* the origin is after the head's last " from ", when the tail says anything */
    Py_ssize_t text_end = start, name[2] = {0, 0}, addr[2] = {0, 0};
    Py_ssize_t from = s[0] || p[1] > p[0] ? rfind(m, text, start, " from ") : -1;
    if (from >= 0) {
        Py_ssize_t span[4], end = client_at(m, from + 6, span);
        if (end < 0)  /* (a name ends at the blank after the tail's ";") */
            return NULL;  /* not name[addr]: Python's reading of the rest */
        if (end < start) {  /* (?::(\d{1,15}))?\Z */
            Py_ssize_t n = digits(m, end + 1, 15);
            if (!at(m, end, ":") || n <= 0 || end + 1 + n != start)
                return NULL;
        }
        text_end = from;
        name[0] = span[0], name[1] = span[1], addr[0] = span[2], addr[1] = span[3];
    }
    PyObject *items[] = {
        Py_NewRef(line), slice(m, 0, qid_end), slice(m, action, action_end),
        slice(m, part, part_end), slice(m, text, text_end), slice(m, name[0], name[1]),
        slice(m, addr[0], addr[1]), s[0] ? slice(m, s[0], s[1]) : Py_NewRef(Py_None),
        slice(m, r[0], r[1]), slice(m, p[0], p[1]), slice(m, h[0], h[1]),
        slice(m, x[0], x[1]),
    };
    return build(self->types[CONTENT], items, 12);
}

/* message-id=<id>: the brackets taken off (the Python parser strips blanks first: a value
 * with blanks around it is left to it); else a header or body check's action */
static PyObject *
cleanup(Shapes *self, PyObject *line, const Text *m, Py_ssize_t qid_end)
{
    Py_ssize_t value = qid_end + 2 + 11;
    if (!at(m, qid_end + 2, "message-id="))
        return content(self, line, m, qid_end);
    if (m->len - value < 2 || CH(m, value) != '<' || CH(m, m->len - 1) != '>')
        return NULL;
    PyObject *items[] = {Py_NewRef(line), slice(m, 0, qid_end), slice(m, value + 1, m->len - 1)};
    return build(self->types[MESSAGE_ID], items, 3);
}

/* --- delivery agents ------------------------------------------------------------------ */

/* [^,\s]* from i */
static Py_ssize_t
field_end(const Text *t, Py_ssize_t i)
{
    while (i < t->len) {
        Py_UCS4 c = CH(t, i);
        if (c == ',' || Py_UNICODE_ISSPACE(c))
            break;
        i++;
    }
    return i;
}

/* to=<r>[, orig_to=<o>], relay=R[, conn_use=N], delay=D[, delays=a/b/c/d][, tls=T]
 * [, dsn=X][, tls=T], status=S[ (text)] : queue.py's _DELIVERY_FIELDS, field by field */
static PyObject *
delivery(Shapes *self, PyObject *line, const Text *m, Py_ssize_t qid_end)
{
    Py_ssize_t i = qid_end + 2;
    if (!at(m, i, "to=<"))
        return NULL;
    Py_ssize_t to = i + 4, to_end = address_end(m, to), orig = 0, orig_end = 0;
    if (to_end < 0)
        return NULL;
    i = to_end + 1;
    if (at(m, i, ", orig_to=<")) {
        orig = i + 11;
        if ((orig_end = address_end(m, orig)) < 0)
            return NULL;
        i = orig_end + 1;
    }
    if (!at(m, i, ", relay="))
        return NULL;
    Py_ssize_t relay = i + 8, relay_end = field_end(m, relay), conn = 0, conn_len = 0;
    i = relay_end;
    if (at(m, i, ", conn_use=")) {
        conn = i + 11;
        conn_len = digits(m, conn, 15);
        if (conn_len <= 0)
            return NULL;
        i = conn + conn_len;
    }
    if (!at(m, i, ", delay="))
        return NULL;
    Py_ssize_t delay = i + 8, delay_end = run_of(m, delay, "0123456789.");
    if (delay_end == delay)
        return NULL;
    i = delay_end;
    if (at(m, i, ", delays=")) {
        Py_ssize_t end = run_of(m, i + 9, "0123456789./");
        if (end == i + 9)
            return NULL;
        i = end;
    }
    Py_ssize_t tls_start[2] = {0, 0}, tls_end[2] = {0, 0}, dsn = 0, dsn_end = 0;
    if (at(m, i, ", tls=")) {
        tls_start[0] = i + 6;
        i = tls_end[0] = field_end(m, i + 6);
    }
    if (at(m, i, ", dsn=")) {
        /* \d\.\d{1,3}\.\d{1,3} */
        Py_ssize_t k = i + 6, second, third;
        if (digits(m, k, 1) != 1 || !at(m, k + 1, "."))
            return NULL;
        second = digits(m, k + 2, 3);
        if (second <= 0 || !at(m, k + 2 + second, "."))
            return NULL;
        third = digits(m, k + 3 + second, 3);
        if (third <= 0)
            return NULL;
        dsn = k;
        i = dsn_end = k + 3 + second + third;
    }
    if (at(m, i, ", tls=")) {
        tls_start[1] = i + 6;
        i = tls_end[1] = field_end(m, i + 6);
    }
    if (!at(m, i, ", status="))
        return NULL;
    Py_ssize_t status = i + 9, status_end = run_of(m, status, "abcdefghijklmnopqrstuvwxyz-");
    Py_ssize_t reply = 0, reply_end = 0;
    if (status_end == status)
        return NULL;
    if (status_end != m->len) {
        if (!at(m, status_end, " (") || CH(m, m->len - 1) != ')')
            return NULL;
        reply = status_end + 2;
        reply_end = m->len - 1;
    }
    /* "queued as NEXT" (smtp, lmtp) or "forwarded as NEXT" (local): the last one */
    Py_ssize_t next = 0, next_end = 0;
    for (Py_ssize_t k = reply_end - 6; k >= reply + 4; k--) {
        if (at(m, k, "ed as ")) {
            if (at(m, k - 4, "queu") || at(m, k - 4, "ward")) {
                next = next_end = k + 6;
                while (next_end < reply_end && CH(m, next_end) != ' ')
                    next_end++;
                while (next_end > next && CH(m, next_end - 1) == ')')
                    next_end--;
                if (!is_queue_id(m, next, next_end))
                    next = next_end = 0;
            }
            break;
        }
    }
    PyObject *delay_text = slice(m, delay, delay_end), *seconds = NULL;
    if (delay_text == NULL)
        return NULL;
    seconds = PyFloat_FromString(delay_text);
    Py_DECREF(delay_text);
    if (seconds == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear();  /* "1.2.3": digits and dots, but no number */
        seconds = Py_NewRef(Py_None);
    }
    int t = tls_end[0] > tls_start[0] ? 0 : 1;
    PyObject *items[] = {
        Py_NewRef(line), slice(m, 0, qid_end), slice(m, to, to_end),
        slice(m, status, status_end), slice(m, relay, relay_end),
        dsn ? slice(m, dsn, dsn_end) : Py_NewRef(empty), seconds,
        reply_end > reply ? slice(m, reply, reply_end) : Py_NewRef(empty),
        orig ? slice(m, orig, orig_end) : Py_NewRef(empty),
        conn_len ? PyLong_FromLongLong(number(m, conn, conn_len)) : Py_NewRef(Py_None),
        tls_end[t] > tls_start[t] ? slice(m, tls_start[t], tls_end[t]) : Py_NewRef(empty),
        next_end > next ? slice(m, next, next_end) : Py_NewRef(empty),
    };
    return build(self->types[DELIVERY], items, 12);
}

/* --- postscreen, Dovecot logins and sessions ------------------------------------------ */

/* \[([^\s\[\]]*)\]:(\d{1,15}) at i: the end of the port (-1); the address and port spans */
static Py_ssize_t
peer_at(const Text *t, Py_ssize_t i, Py_ssize_t span[4])
{
    if (!at(t, i, "["))
        return -1;
    span[0] = i + 1;
    span[1] = name_run(t, span[0]);
    if (!at(t, span[1], "]:"))
        return -1;
    span[2] = span[1] + 2;
    Py_ssize_t n = digits(t, span[2], 15);
    if (n <= 0)
        return -1;
    span[3] = span[2] + n;
    return span[3];
}

/* CONNECT from [a]:p to [b]:\d+\Z, and PASS OLD|NEW [a]:p\Z */
static PyObject *
postscreen(Shapes *self, PyObject *line, const Text *m)
{
    Py_ssize_t peer[4], i;
    if (at(m, 0, "CONNECT from ")) {
        if ((i = peer_at(m, 13, peer)) < 0 || !at(m, i, " to [")
            || (i = name_run(m, i + 5)) >= m->len || !at(m, i, "]:"))
            return NULL;
        Py_ssize_t n = digits(m, i + 2, PY_SSIZE_T_MAX);
        if (n <= 0 || i + 2 + n != m->len)
            return NULL;
        PyObject *items[] = {
            Py_NewRef(line), Py_NewRef(empty), slice(m, peer[0], peer[1]),
            PyLong_FromLongLong(number(m, peer[2], peer[3] - peer[2])),
        };
        return build(self->types[CONNECT], items, 4);
    }
    if (!(at(m, 0, "PASS OLD ") || at(m, 0, "PASS NEW ")) || peer_at(m, 9, peer) != m->len)
        return NULL;
    PyObject *items[] = {
        Py_NewRef(line), slice(m, 0, 8), slice(m, peer[0], peer[1]),
        PyLong_FromLongLong(number(m, peer[2], peer[3] - peer[2])), Py_NewRef(empty),
    };
    return build(self->types[VERDICT], items, 5);
}

/* The Dovecot level t[start:end] names ("Info" -> "info"), borrowed; NULL for none. */
static PyObject *
level_of(Shapes *self, const Text *t, Py_ssize_t start, Py_ssize_t end)
{
    PyObject *name = slice(t, start, end), *level;
    if (name == NULL)
        return NULL;
    level = PyDict_GetItemWithError(self->levels, name);
    Py_DECREF(name);
    return level;
}

/* [0-9A-Fa-f:.]+ from i: the end of the run */
static Py_ssize_t
address_run(const Text *t, Py_ssize_t i)
{
    return run_of(t, i, "0123456789ABCDEFabcdef:.");
}

/* dovecot.py's _split_user of t[start:end]: ">", ", PID=N", ", method=M", "," and blanks,
 * each optional, read from the right; the user's end, and the method's span */
static Py_ssize_t
split_user(const Text *t, Py_ssize_t start, Py_ssize_t end, Py_ssize_t method[2])
{
    while (end > start && Py_UNICODE_ISSPACE(CH(t, end - 1)))
        end--;
    if (end > start && CH(t, end - 1) == ',')
        end--;
    Py_ssize_t mark = rfind(t, start, end, ", method=");
    if (mark >= 0) {  /* [\w-]+\Z (an ASCII line: \w is [A-Za-z0-9_]) */
        Py_ssize_t value = run_of(t, mark + 9,
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
        if (value == end && end > mark + 9) {
            method[0] = mark + 9, method[1] = end;
            end = mark;
        }
    }
    Py_ssize_t pid = end;  /* , PID=\d+\Z */
    while (pid > start && IS_DIGIT(CH(t, pid - 1)))
        pid--;
    if (pid < end && pid - 6 >= start && at(t, pid - 6, ", PID="))
        end = pid - 6;
    if (end > start && CH(t, end - 1) == '>')
        end--;
    return end;
}

/* COMPONENT: Login: user=<u>, method=M, rip=R, lip=L, mpid=N, TLS, session=<S> (2.4:
 * "Logged in: "), dovecot.login's reading, of an ASCII line (Python reads \s, \d and \w
 * of the others) */
static PyObject *
login(Shapes *self, PyObject *line, const Text *m, Py_ssize_t body, PyObject *protocol)
{
    Py_ssize_t f;
    if (!PyUnicode_IS_ASCII(m->str))
        return NULL;
    if (at(m, body, "Login: "))
        f = body + 7;
    else if (at(m, body, "Logged in: "))
        f = body + 11;
    else
        return NULL;
    /* the user name is client text: the remote IP is the last "rip=" field */
    Py_ssize_t rip = rfind(m, f, m->len, "rip="), rip_end = 0;
    for (; rip >= 0; rip = rfind(m, f, rip, "rip=")) {
        if ((rip == f || CH(m, rip - 1) == ' ' || CH(m, rip - 1) == ',')
            && (rip_end = address_run(m, rip + 4)) > rip + 4)
            break;
    }
    if (rip < 0)
        return NULL;
    Py_ssize_t lip = 0, lip_end = 0, session = 0, session_end = 0;
    for (Py_ssize_t k = find(m, rip_end, m->len, "lip="); k >= 0;
         k = find(m, k + 1, m->len, "lip=")) {
        if (k == rip_end || CH(m, k - 1) == ' ' || CH(m, k - 1) == ',') {
            Py_ssize_t end = address_run(m, k + 4);
            if (end > k + 4) {
                lip = k + 4, lip_end = end;
                break;
            }
        }
    }
    for (Py_ssize_t k = find(m, rip_end, m->len, "session=<"); k >= 0;
         k = find(m, k + 1, m->len, "session=<")) {
        Py_ssize_t end = k + 9;
        while (end < m->len && CH(m, end) != '<' && CH(m, end) != '>')
            end++;
        if (at(m, end, ">")) {
            session = k + 9, session_end = end;
            break;
        }
    }
    Py_ssize_t method[2] = {0, 0}, user = 0, user_end = 0, head_end = rip > f ? rip - 1 : f;
    if (at(m, f, "user=") && f + 5 <= head_end) {
        user = f + 5 + (at(m, f + 5, "<") && f + 6 <= head_end);
        user_end = split_user(m, user, head_end, method);
    }
    else
        split_user(m, f, head_end, method);
    int tls = find(m, rip_end, m->len, "TLS") >= 0 || find(m, rip_end, m->len, "secured") >= 0;
    PyObject *items[] = {
        Py_NewRef(line), Py_NewRef(protocol), slice(m, user, user_end),
        slice(m, method[0], method[1]), slice(m, rip + 4, rip_end), slice(m, lip, lip_end),
        slice(m, session, session_end), PyBool_FromLong(tls),
    };
    return build(self->types[LOGIN], items, 8);
}

/* The role dovecot.py gave a component (a 5-tuple's third item) is role. */
static int
has_role(PyObject *known, const char *role)
{
    return PyTuple_Check(known) && PyTuple_GET_SIZE(known) == 5
        && PyUnicode_Check(PyTuple_GET_ITEM(known, 2)) && PyUnicode_Check(PyTuple_GET_ITEM(known, 3))
        && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(known, 2), role) == 0;
}

/* dovecot: "COMPONENT: text" or "COMPONENT: Info: text", the component one that dovecot.py
 * has already described: a mail session (lmtp(123), imap(user)), or a login process's
 * successful login */
static PyObject *
dovecot(Shapes *self, PyObject *line, const Text *m)
{
    Py_ssize_t colon = find(m, 0, m->len, ": ");
    if (colon <= 0)  /* (Dovecot 1.x's "Info: imap(u): ..." is none of these: no level is) */
        return NULL;
    PyObject *component = slice(m, 0, colon), *known;
    if (component == NULL)
        return NULL;
    known = PyDict_GetItemWithError(self->components, component);
    Py_DECREF(component);
    if (known == NULL)
        return NULL;
    int session = has_role(known, "session");
    if (!session && !has_role(known, "login"))
        return NULL;
    Py_ssize_t body = colon + 2, second = find(m, body, m->len, ": ");
    if (second > body && second - body < 8) {
        PyObject *level = level_of(self, m, body, second);
        if (level != NULL) {
            if (!PyUnicode_Check(level) || PyUnicode_CompareWithASCIIString(level, "info") != 0)
                return NULL;  /* the Python parser writes the other levels back its way */
            body = second + 2;
        }
        else if (PyErr_Occurred())
            return NULL;
    }
    if (!session)
        return login(self, line, m, body, PyTuple_GET_ITEM(known, 3));
    if (at(m, body, "Successfully relayed message: "))
        return NULL;  /* Dovecot's submission service relayed a message: dovecot.py's */
    PyObject *items[] = {
        Py_NewRef(line), Py_NewRef(PyTuple_GET_ITEM(known, 3)),
        Py_NewRef(PyTuple_GET_ITEM(known, 4)), slice(m, body, m->len),
    };
    return build(self->types[SESSION], items, 4);
}

/* --- the call ------------------------------------------------------------------------- */

/* What each daemon's lines may be here (smtp and lmtp also log TLS handshakes). */
enum { SMTPD, POSTSCREEN, QMGR, CLEANUP, AGENT, AGENT_TLS };
static const struct {
    const char *name;
    int role;
} DAEMONS[] = {
    {"smtpd", SMTPD}, {"postscreen", POSTSCREEN}, {"qmgr", QMGR}, {"cleanup", CLEANUP},
    {"smtp", AGENT_TLS}, {"lmtp", AGENT_TLS}, {"local", AGENT}, {"virtual", AGENT},
    {"pipe", AGENT}, {"error", AGENT}, {"retry", AGENT}, {"discard", AGENT},
};

/* The event of a Postfix daemon's line (the daemon is the tag's last part), or NULL. */
static PyObject *
postfix(Shapes *self, PyObject *line, const Text *p, const Text *m)
{
    Py_ssize_t daemon = p->len;
    while (CH(p, daemon - 1) != '/')
        daemon--;
    for (size_t k = 0; k < sizeof DAEMONS / sizeof DAEMONS[0]; k++) {
        const char *name = DAEMONS[k].name;
        if (p->len - daemon != (Py_ssize_t)strlen(name) || !at(p, daemon, name))
            continue;
        int role = DAEMONS[k].role;
        if (role == SMTPD)
            return smtpd(self, line, m);
        if (role == POSTSCREEN)
            return postscreen(self, line, m);
        Py_ssize_t qid_end = queue_id_end(m);
        if (qid_end == 0)
            return role == AGENT_TLS ? tls(self, line, m) : NULL;
        if (role == QMGR)
            return qmgr(self, line, m, qid_end);
        if (role == CLEANUP)
            return cleanup(self, line, m, qid_end);
        return delivery(self, line, m, qid_end);
    }
    return NULL;
}

static PyObject *
shapes_call(Shapes *self, PyObject *args, PyObject *kwargs)
{
    PyObject *line, *event = NULL;
    if (!PyArg_UnpackTuple(args, "Shapes", 1, 1, &line))
        return NULL;
    if (!PyTuple_Check(line) || PyTuple_GET_SIZE(line) < 5)
        Py_RETURN_NONE;
    PyObject *program = PyTuple_GET_ITEM(line, 2), *message = PyTuple_GET_ITEM(line, 4);
    if (!PyUnicode_CheckExact(program) || !PyUnicode_CheckExact(message))
        Py_RETURN_NONE;
    Text p = text_of(program), m = text_of(message);
    if (p.len == 7 && at(&p, 0, "dovecot"))
        event = dovecot(self, line, &m);
    else if (at(&p, 0, "postfix/"))
        event = postfix(self, line, &p, &m);
    if (event == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return event;
}

static PyObject *
shapes_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {
        "connect", "disconnect", "tls", "client", "removed", "queue_active", "message_id",
        "delivery", "verdict", "session", "content", "login", "counters", "components",
        "levels", NULL,
    };
    PyObject *given[KINDS], *counters, *components, *levels;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$O!O!O!O!O!O!O!O!O!O!O!O!O!O!O!:Shapes", names,
            &PyType_Type, &given[CONNECT], &PyType_Type, &given[DISCONNECT],
            &PyType_Type, &given[TLS], &PyType_Type, &given[CLIENT],
            &PyType_Type, &given[REMOVED], &PyType_Type, &given[QUEUE_ACTIVE],
            &PyType_Type, &given[MESSAGE_ID], &PyType_Type, &given[DELIVERY],
            &PyType_Type, &given[VERDICT], &PyType_Type, &given[SESSION],
            &PyType_Type, &given[CONTENT], &PyType_Type, &given[LOGIN],
            &PyDict_Type, &counters, &PyDict_Type, &components, &PyDict_Type, &levels))
        return NULL;
    for (int k = 0; k < KINDS; k++) {
        if (!PyType_IsSubtype((PyTypeObject *)given[k], &PyTuple_Type)) {
            PyErr_Format(PyExc_TypeError, "Shapes: %s must be a tuple type", names[k]);
            return NULL;
        }
    }
    Shapes *self = (Shapes *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    for (int k = 0; k < KINDS; k++)
        self->types[k] = (PyTypeObject *)Py_NewRef(given[k]);
    self->counters = Py_NewRef(counters);
    self->components = Py_NewRef(components);
    self->levels = Py_NewRef(levels);
    return (PyObject *)self;
}

static int
shapes_traverse(Shapes *self, visitproc visit, void *arg)
{
    for (int k = 0; k < KINDS; k++)
        Py_VISIT(self->types[k]);
    Py_VISIT(self->counters);
    Py_VISIT(self->components);
    Py_VISIT(self->levels);
    return 0;
}

static int
shapes_clear(Shapes *self)
{
    for (int k = 0; k < KINDS; k++)
        Py_CLEAR(self->types[k]);
    Py_CLEAR(self->counters);
    Py_CLEAR(self->components);
    Py_CLEAR(self->levels);
    return 0;
}

static void
shapes_dealloc(Shapes *self)
{
    PyObject_GC_UnTrack(self);
    shapes_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ShapesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "postwatch.parse._shapes.Shapes",
    .tp_basicsize = sizeof(Shapes),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Shapes(*, connect=..., levels=...)(line) -> the event of a common shape, or None.",
    .tp_new = shapes_new,
    .tp_call = (ternaryfunc)shapes_call,
    .tp_traverse = (traverseproc)shapes_traverse,
    .tp_clear = (inquiry)shapes_clear,
    .tp_dealloc = (destructor)shapes_dealloc,
};

static struct PyModuleDef shapes_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "postwatch.parse._shapes",
    .m_doc = "The parser's most common shapes in C (optional: the parser works without it).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__shapes(void)
{
    if (PyType_Ready(&ShapesType) < 0)
        return NULL;
    if (empty == NULL && (empty = PyUnicode_FromStringAndSize(NULL, 0)) == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&shapes_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "Shapes", (PyObject *)&ShapesType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
