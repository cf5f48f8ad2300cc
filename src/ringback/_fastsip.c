/* The lean call path's byte scans in C: the Python in calls/fast_path.py and sip/fast.py is
 * the reference, and is used wherever this module did not build.
 *
 * scan_invite(data, src_host, src_port, reliable, max_message_size, max_header_count,
 *             max_line_length, names) is `FastRedirect.scan` (calls/fast_path.py) line for
 * line: it reads what a 302 needs from a raw INVITE and returns
 *   - the same tuple as the Python scan: (Request-URI, Call-ID, From tag, transaction key,
 *     destination, head_a, head_b), the 302 being STATUS + head_a + ";tag=" + tag + head_b
 *     + Contact ...;
 *   - None where the Python scan returns None (the full parser then answers), and also for
 *     a non-ASCII Via host or port, which the Python scan may accept (the full path answers
 *     those the same);
 *   - a header name (bytes) it finds neither in the 302's headers nor in `names` (the
 *     Python scan's cache of other names: None = fine to pass over): the caller runs the
 *     Python scan for that message, which classifies the name and caches it.
 *
 * ack_key(data) is `fast_via_branch(top_via_value(data))` (sip/fast.py): the transaction
 * key parts of an ACK's top Via, or None.
 *
 * derived_tag(key, call_id, from_tag) is `sip/tags.py`'s `derived_tag` as bytes: SipHash-2-4
 * (Aumasson and Bernstein) keyed with the 16-byte key, over Call-ID, a zero byte and From
 * tag; the first 6 bytes of the little-endian digest in lower-case hex.
 *
 * tests/unit/calls/test_fastsip.py checks with hypothesis that all give the Python answers
 * (on structured and on randomly cut and spliced messages); tests/unit/sip/test_tags.py
 * checks the tags against SipHash's published vectors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_LINES 256 /* more header lines than this: the Python scan answers */
#define MAX_PARAMS 32 /* more Via parameters than this: the Python scan answers */

typedef struct {
    const char *p;
    Py_ssize_t n;
} span;

static PyObject *invite_str; /* "INVITE", the last item of every transaction key */

enum { K_OTHER, K_VIA, K_FROM, K_TO, K_CALL_ID, K_CSEQ, K_MAX_FORWARDS, K_CONTENT_LENGTH,
       K_CONTENT_TYPE };

static int
eq(span s, const char *lit)
{
    Py_ssize_t n = (Py_ssize_t)strlen(lit);
    return s.n == n && memcmp(s.p, lit, (size_t)n) == 0;
}

static int
ieq(span s, const char *lit) /* ASCII case-insensitive, `lit` in lower case */
{
    Py_ssize_t n = (Py_ssize_t)strlen(lit);
    if (s.n != n)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s.p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lit[i])
            return 0;
    }
    return 1;
}

static int
kind_of(span name) /* _EXACT: header names spelled exactly as the full path writes them */
{
    switch (name.n) {
    case 2: return eq(name, "To") ? K_TO : K_OTHER;
    case 3: return eq(name, "Via") ? K_VIA : K_OTHER;
    case 4: return eq(name, "From") ? K_FROM : (eq(name, "CSeq") ? K_CSEQ : K_OTHER);
    case 7: return eq(name, "Call-ID") ? K_CALL_ID : K_OTHER;
    case 12: return eq(name, "Max-Forwards") ? K_MAX_FORWARDS
                    : (eq(name, "Content-Type") ? K_CONTENT_TYPE : K_OTHER);
    case 14: return eq(name, "Content-Length") ? K_CONTENT_LENGTH : K_OTHER;
    default: return K_OTHER;
    }
}

static const char *
find(span s, Py_ssize_t from, char c) /* bytes.find for one byte */
{
    if (from >= s.n)
        return NULL;
    return memchr(s.p + from, c, (size_t)(s.n - from));
}

static int
has(span s, char c)
{
    return s.n > 0 && memchr(s.p, c, (size_t)s.n) != NULL;
}

static int
has2(const char *p, Py_ssize_t n, char a, char b) /* the pair `ab` occurs in p[:n] */
{
    for (Py_ssize_t i = 0; i + 1 < n; i++)
        if (p[i] == a && p[i + 1] == b)
            return 1;
    return 0;
}

static int
all_digits(span s) /* bytes.isdigit: non-empty, ASCII digits */
{
    if (s.n == 0)
        return 0;
    for (Py_ssize_t i = 0; i < s.n; i++)
        if (s.p[i] < '0' || s.p[i] > '9')
            return 0;
    return 1;
}

static long long
number(span s) /* of all_digits(s) with at most 18 digits */
{
    long long v = 0;
    for (Py_ssize_t i = 0; i < s.n; i++)
        v = v * 10 + (s.p[i] - '0');
    return v;
}

static int
is_ws(char c) /* bytes.strip()'s whitespace */
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

static span
strip(span s)
{
    while (s.n > 0 && is_ws(s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && is_ws(s.p[s.n - 1]))
        s.n--;
    return s;
}

static int
lower_has_tag(span s) /* b"tag" in value.lower() */
{
    for (Py_ssize_t i = 0; i + 2 < s.n; i++)
        if ((s.p[i] | 0x20) == 't' && (s.p[i + 1] | 0x20) == 'a' && (s.p[i + 2] | 0x20) == 'g')
            return 1;
    return 0;
}

/* _from_tag: the tag of `["name"] <uri>;tag=x`; 0 when there is none or it is odd. */
static int
from_tag(span value, span *tag)
{
    Py_ssize_t gt = -1;
    for (Py_ssize_t i = value.n - 1; i >= 0; i--)
        if (value.p[i] == '>') {
            gt = i;
            break;
        }
    if (gt < 0)
        return 0;
    span tail = {value.p + gt + 1, value.n - gt - 1};
    if (memchr(value.p + gt, '"', (size_t)(value.n - gt)) || has(tail, ' ') || has(tail, '\t'))
        return 0;
    int found = 0;
    const char *semi = find(tail, 0, ';');
    while (semi != NULL) {
        Py_ssize_t start = semi - tail.p + 1;
        const char *next = find(tail, start, ';');
        span param = {tail.p + start, (next ? next - tail.p : tail.n) - start};
        const char *eqs = find(param, 0, '=');
        span name = {param.p, eqs ? eqs - param.p : param.n};
        if (ieq(name, "tag")) {
            if (found || eqs == NULL || eqs + 1 == param.p + param.n)
                return 0;
            found = 1;
            tag->p = eqs + 1;
            tag->n = param.p + param.n - tag->p;
        }
        semi = next;
    }
    return found;
}

typedef struct {
    PyObject *key;  /* (branch, host lower, port, "INVITE") */
    PyObject *dest; /* (host, port) */
    PyObject *line; /* the top Via line as the 302 carries it */
} top_via;

static int
host_ok(span host) /* not host.replace(".", "").replace("-", "").isalnum(), ASCII only */
{
    int alnum = 0;
    for (Py_ssize_t i = 0; i < host.n; i++) {
        char c = host.p[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            alnum = 1;
        else if (c != '.' && c != '-')
            return 0;
    }
    return alnum;
}

/* _top_via. Returns 1 and fills `out`, 0 for "not the common spelling", -1 on error. */
static int
parse_top_via(span line, span src_host, long src_port, int reliable, top_via *out)
{
    span value = {line.p + 5, line.n - 5};
    if (value.n < 8 || memcmp(value.p, "SIP/2.0/", 8) != 0 || has(value, ',') || has(value, '"'))
        return 0;
    const char *sp = find(value, 8, ' ');
    if (sp == NULL)
        return 0;
    Py_ssize_t space = sp - value.p;
    const char *sm = find(value, space, ';');
    if (sm == NULL)
        return 0;
    Py_ssize_t semi = sm - value.p;
    if (find(value, space + 1, ' ') != NULL || has(value, '\t'))
        return 0;
    span transport = {value.p + 8, space - 8};
    if (transport.n == 0)
        return 0;
    for (Py_ssize_t i = 0; i < transport.n; i++) {
        char c = transport.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return 0;
    }
    span sent_by = {value.p + space + 1, semi - space - 1};
    const char *colon = find(sent_by, 0, ':');
    span host = {sent_by.p, colon ? colon - sent_by.p : sent_by.n};
    if (host.n == 0 || host.p[0] == '[' || !host_ok(host))
        return 0;
    span port;
    long via_port = 0;
    if (colon) {
        port.p = colon + 1;
        port.n = sent_by.p + sent_by.n - port.p;
        if (!all_digits(port) || port.p[0] == '0' || port.n > 5)
            return 0;
        via_port = (long)number(port);
        if (via_port > 65535)
            return 0;
    } else {
        port.p = (ieq(transport, "tls") || ieq(transport, "wss")) ? "5061" : "5060";
        port.n = 4;
    }
    /* parameters */
    span params[MAX_PARAMS];
    int kept[MAX_PARAMS]; /* 1: copied as is, 2: rport (value replaced), 0: dropped */
    int count = 0, rport = 0;
    span branch = {NULL, 0};
    Py_ssize_t at = semi + 1;
    for (;;) {
        const char *next = find(value, at, ';');
        span param = {value.p + at, (next ? next - value.p : value.n) - at};
        if (count == MAX_PARAMS)
            return 0;
        const char *eqs = find(param, 0, '=');
        span name = {param.p, eqs ? eqs - param.p : param.n};
        if (name.n == 0 || (eqs && eqs + 1 == param.p + param.n))
            return 0;
        params[count] = param;
        kept[count] = 1;
        if (ieq(name, "branch")) {
            if (branch.p != NULL || eqs == NULL)
                return 0;
            branch.p = eqs + 1;
            branch.n = param.p + param.n - branch.p;
        } else if (ieq(name, "maddr")) {
            return 0;
        } else if (ieq(name, "rport")) {
            rport = 1;
            params[count] = name;
            kept[count] = 2;
        } else if (ieq(name, "received")) {
            kept[count] = 0;
        }
        count++;
        if (next == NULL)
            break;
        at = next - value.p + 1;
    }
    if (branch.p == NULL || branch.n <= 7 || memcmp(branch.p, "z9hG4bK", 7) != 0)
        return 0;
    int same_host = host.n == src_host.n;
    for (Py_ssize_t i = 0; same_host && i < host.n; i++) {
        char a = host.p[i], b = src_host.p[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z')
            b = (char)(b - 'A' + 'a');
        same_host = a == b;
    }
    char src_port_text[24];
    int src_port_n = snprintf(src_port_text, sizeof src_port_text, "%ld", src_port);
    if (rport || !same_host) {
        /* line[:5] + value[:semi] + ";" + ";".join(params) + ";received=" + src_host */
        Py_ssize_t size = 5 + semi;
        for (int i = 0; i < count; i++)
            if (kept[i])
                size += 1 + params[i].n + (kept[i] == 2 ? 1 + src_port_n : 0);
        size += 10 + src_host.n;
        out->line = PyBytes_FromStringAndSize(NULL, size);
        if (out->line == NULL)
            return -1;
        char *w = PyBytes_AS_STRING(out->line);
        memcpy(w, line.p, (size_t)(5 + semi));
        w += 5 + semi;
        for (int i = 0; i < count; i++) {
            if (!kept[i])
                continue;
            *w++ = ';';
            memcpy(w, params[i].p, (size_t)params[i].n);
            w += params[i].n;
            if (kept[i] == 2) {
                *w++ = '=';
                memcpy(w, src_port_text, (size_t)src_port_n);
                w += src_port_n;
            }
        }
        memcpy(w, ";received=", 10);
        w += 10;
        memcpy(w, src_host.p, (size_t)src_host.n);
    } else {
        out->line = PyBytes_FromStringAndSize(line.p, line.n);
        if (out->line == NULL)
            return -1;
    }
    /* the key: (branch, host.lower(), port, "INVITE") */
    PyObject *branch_s = PyUnicode_DecodeUTF8(branch.p, branch.n, "surrogateescape");
    PyObject *host_s = PyUnicode_New(host.n, 127);
    PyObject *port_s = PyUnicode_FromStringAndSize(port.p, port.n);
    if (branch_s == NULL || host_s == NULL || port_s == NULL) {
        Py_XDECREF(branch_s);
        Py_XDECREF(host_s);
        Py_XDECREF(port_s);
        Py_CLEAR(out->line);
        return -1;
    }
    Py_UCS1 *h = PyUnicode_1BYTE_DATA(host_s);
    for (Py_ssize_t i = 0; i < host.n; i++) {
        char c = host.p[i];
        h[i] = (Py_UCS1)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
    }
    out->key = PyTuple_New(4);
    if (out->key == NULL) {
        Py_DECREF(branch_s);
        Py_DECREF(host_s);
        Py_DECREF(port_s);
        Py_CLEAR(out->line);
        return -1;
    }
    PyTuple_SET_ITEM(out->key, 0, branch_s);
    PyTuple_SET_ITEM(out->key, 1, host_s);
    PyTuple_SET_ITEM(out->key, 2, port_s);
    PyTuple_SET_ITEM(out->key, 3, Py_NewRef(invite_str));
    out->dest = NULL;
    if (!reliable && !rport) {
        PyObject *src_host_s = PyUnicode_FromStringAndSize(src_host.p, src_host.n);
        if (src_host_s != NULL)
            out->dest = Py_BuildValue("(Nl)", src_host_s, via_port ? via_port : 5060L);
        if (out->dest == NULL) {
            Py_CLEAR(out->line);
            Py_CLEAR(out->key);
            return -1;
        }
    }
    return 1;
}

/* The head's lines, split at CRLF as the Python scan splits them: the number of lines (the
 * request line first; at most MAX_LINES) and, in *end, the offset of the first CRLFCRLF; 0
 * to decline: no blank line, a bare LF, a folded line or "\r\r" in the head, too many lines.
 * This is the byte loop the Python scan's checks describe; `split_head` gives the same
 * answer with one memchr per line break. */
static Py_ssize_t
split_head_exact(const char *data, Py_ssize_t size, span *lines, Py_ssize_t *end_out)
{
    Py_ssize_t end = -1;
    for (Py_ssize_t i = 0; i + 3 < size; i++)
        if (data[i] == '\r' && data[i + 1] == '\n' && data[i + 2] == '\r' && data[i + 3] == '\n') {
            end = i;
            break;
        }
    if (end <= 0)
        return 0;
    if (has2(data, end, '\n', ' ') || has2(data, end, '\n', '\t') || has2(data, end, '\r', '\r'))
        return 0; /* folded lines, stray CRs */
    Py_ssize_t nlines = 0, start = 0;
    for (Py_ssize_t i = 0; i <= end; i++) {
        if (i == end || (data[i] == '\r' && i + 1 < end && data[i + 1] == '\n')) {
            if (nlines == MAX_LINES)
                return 0;
            lines[nlines].p = data + start;
            lines[nlines].n = i - start;
            nlines++;
            start = i + 2;
            i++;
        } else if (data[i] == '\n') {
            return 0; /* a bare LF */
        }
    }
    *end_out = end;
    return nlines;
}

/* `split_head_exact`'s answer from the line breaks alone: a line holding no CR (the common
 * case) ends at the next LF, which must follow a CR; a line that holds one is left to the
 * byte loop. */
static Py_ssize_t
split_head(const char *data, Py_ssize_t size, span *lines, Py_ssize_t *end_out)
{
    Py_ssize_t nlines = 0, start = 0;
    for (;;) {
        const char *lf = memchr(data + start, '\n', (size_t)(size - start));
        if (lf == NULL)
            return 0; /* no blank line */
        Py_ssize_t at = lf - data;
        if (at == start || data[at - 1] != '\r')
            return 0; /* a bare LF */
        Py_ssize_t n = at - 1 - start;
        if (n > 0 && memchr(data + start, '\r', (size_t)n) != NULL)
            return split_head_exact(data, size, lines, end_out);
        if (n == 0) { /* the blank line */
            if (start == 0)
                return 0;
            *end_out = start - 2;
            return nlines;
        }
        if (nlines == MAX_LINES)
            return 0;
        lines[nlines].p = data + start;
        lines[nlines].n = n;
        nlines++;
        if (at + 1 < size && (data[at + 1] == ' ' || data[at + 1] == '\t'))
            return 0; /* a folded line (or no blank line: declined either way) */
        start = at + 1;
        if (start >= size)
            return 0;
    }
}

static PyObject *
scan_invite(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    /* (data, src_host, src_port, reliable, max_size, max_headers, max_line, names), checked
       by hand: PyArg_ParseTuple's format parsing cost a sixth of the scan */
    if (nargs != 8 || !PyUnicode_Check(args[1]) || !PyLong_Check(args[2])
        || !PyDict_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError,
                        "scan_invite(data, src_host: str, src_port: int, reliable, "
                        "max_message_size, max_header_count, max_line_length, names: dict)");
        return NULL;
    }
    PyObject *src_host_obj = args[1], *names = args[7], *source_tuple = NULL;
    long src_port = PyLong_AsLong(args[2]);
    int reliable = PyObject_IsTrue(args[3]);
    Py_ssize_t max_size = PyLong_AsSsize_t(args[4]);
    Py_ssize_t max_headers = PyLong_AsSsize_t(args[5]);
    Py_ssize_t max_line = PyLong_AsSsize_t(args[6]);
    if (PyErr_Occurred() || reliable < 0)
        return NULL;
    Py_buffer buf;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t src_host_n;
    const char *src_host_p = PyUnicode_AsUTF8AndSize(src_host_obj, &src_host_n);
    if (src_host_p == NULL)
        goto done;
    span src_host = {src_host_p, src_host_n};
    const char *data = buf.buf;
    Py_ssize_t size = buf.len;

    /* the head: up to the first CRLFCRLF, in lines */
    if (size > max_size)
        goto decline;
    span lines[MAX_LINES];
    Py_ssize_t end = -1;
    Py_ssize_t nlines = split_head(data, size, lines, &end);
    if (nlines == 0)
        goto decline;
    if (nlines > max_headers + 1)
        goto decline;
    for (Py_ssize_t i = 0; i < nlines; i++)
        if (lines[i].n > max_line)
            goto decline;
    /* request line: exactly "METHOD SP URI SP SIP/2.0" */
    span first = lines[0];
    const char *sp1 = find(first, 0, ' ');
    if (sp1 == NULL)
        goto decline;
    const char *sp2 = find(first, sp1 - first.p + 1, ' ');
    if (sp2 == NULL || find(first, sp2 - first.p + 1, ' ') != NULL)
        goto decline;
    span version = {sp2 + 1, first.p + first.n - sp2 - 1};
    if (!eq(version, "SIP/2.0"))
        goto decline;
    span ruri = {sp1 + 1, sp2 - sp1 - 1};

    /* header lines */
    span copied[MAX_LINES];
    int ncopied = 0, top_via_at = -1, to_at = -1;
    span single[K_CONTENT_TYPE + 1];
    int seen[K_CONTENT_TYPE + 1] = {0};
    int nsingles = 0;
    for (Py_ssize_t li = 1; li < nlines; li++) {
        span line = lines[li];
        const char *c = find(line, 0, ':');
        if (c == NULL || c == line.p)
            goto decline;
        Py_ssize_t colon = c - line.p;
        span name = {line.p, colon};
        int kind = kind_of(name);
        if (kind == K_OTHER) {
            PyObject *key = PyBytes_FromStringAndSize(name.p, name.n);
            if (key == NULL)
                goto done;
            PyObject *verdict = PyDict_GetItemWithError(names, key);
            if (verdict == Py_None) {
                Py_DECREF(key);
                continue;
            }
            if (verdict != NULL || PyErr_Occurred()) {
                Py_DECREF(key);
                if (PyErr_Occurred())
                    goto done;
                goto decline;
            }
            result = key; /* not seen yet: the Python scan classifies it */
            goto done;
        }
        if (kind == K_MAX_FORWARDS || kind == K_CONTENT_LENGTH || kind == K_CONTENT_TYPE) {
            if (seen[kind])
                goto decline;
            seen[kind] = 1;
            nsingles++;
            span v = {line.p + colon + 1, line.n - colon - 1};
            single[kind] = strip(v);
            continue;
        }
        Py_ssize_t value_at = colon + 2;
        if (value_at > line.n || line.p[colon + 1] != ' ' || value_at == line.n
            || line.p[value_at] == ' ' || line.p[value_at] == '\t'
            || line.p[line.n - 1] == ' ' || line.p[line.n - 1] == '\t')
            goto decline; /* the full path would strip: not byte for byte */
        if (kind == K_VIA) {
            if (top_via_at < 0)
                top_via_at = ncopied;
            copied[ncopied++] = line;
            continue;
        }
        if (seen[kind])
            goto decline;
        if (kind == K_TO)
            to_at = ncopied;
        seen[kind] = 1;
        nsingles++;
        single[kind].p = line.p + value_at;
        single[kind].n = line.n - value_at;
        copied[ncopied++] = line;
    }
    if (top_via_at < 0 || nsingles < 4)
        goto decline;
    if (!seen[K_CALL_ID] || !seen[K_CSEQ] || !seen[K_TO] || !seen[K_FROM])
        goto decline;
    /* CSeq: "<number> INVITE" */
    span cseq = single[K_CSEQ];
    const char *csp = find(cseq, 0, ' ');
    if (csp == NULL)
        goto decline;
    span cseq_number = {cseq.p, csp - cseq.p};
    span method = {csp + 1, cseq.p + cseq.n - csp - 1};
    if (!eq(method, "INVITE") || !all_digits(cseq_number) || cseq_number.n > 10)
        goto decline;
    if (number(cseq_number) > 4294967295LL)
        goto decline;
    if (seen[K_MAX_FORWARDS]) {
        span mf = single[K_MAX_FORWARDS];
        if (!all_digits(mf) || mf.n > 3)
            goto decline;
        long long hops = number(mf);
        if (hops <= 0 || hops >= 256)
            goto decline; /* 483 or 400: the full path answers those */
    }
    if (!seen[K_CONTENT_LENGTH])
        goto decline;
    span length = single[K_CONTENT_LENGTH];
    if (!all_digits(length))
        goto decline;
    Py_ssize_t body = size - end - 4;
    for (Py_ssize_t i = 0; i < length.n; i++) /* int(length) > body, without overflow */
        if (length.p[i] != '0') {
            if (length.n - i > 18 || number(length) > (long long)body)
                goto decline;
            break;
        }
    if (lower_has_tag(single[K_TO]))
        goto decline; /* a To tag: the full path */
    span tag = {NULL, 0};
    if (!from_tag(single[K_FROM], &tag))
        goto decline;
    top_via via = {NULL, NULL, NULL};
    int ok = parse_top_via(copied[top_via_at], src_host, src_port, reliable, &via);
    if (ok < 0)
        goto done;
    if (ok == 0)
        goto decline;
    if (via.dest == NULL) { /* the source itself */
        source_tuple = Py_BuildValue("(Ol)", src_host_obj, src_port);
        if (source_tuple == NULL) {
            Py_DECREF(via.key);
            Py_DECREF(via.line);
            goto done;
        }
        via.dest = source_tuple;
    }
    /* head_a: copied lines up to the To value (top Via rewritten), CRLF after each but the
       last; head_b: CRLF, then the rest, each ending in CRLF */
    const char *via_line = PyBytes_AS_STRING(via.line);
    Py_ssize_t via_n = PyBytes_GET_SIZE(via.line);
    Py_ssize_t a_n = 0, b_n = 0;
    for (int i = 0; i < ncopied; i++) {
        Py_ssize_t n = (i == top_via_at ? via_n : copied[i].n) + 2;
        if (i < to_at)
            a_n += n;
        else if (i == to_at)
            a_n += n - 2, b_n += 2;
        else
            b_n += n;
    }
    PyObject *head_a = PyBytes_FromStringAndSize(NULL, a_n);
    PyObject *head_b = PyBytes_FromStringAndSize(NULL, b_n);
    if (head_a == NULL || head_b == NULL) {
        Py_XDECREF(head_a);
        Py_XDECREF(head_b);
        Py_DECREF(via.key);
        Py_DECREF(via.line);
        Py_DECREF(via.dest);
        goto done;
    }
    char *w = PyBytes_AS_STRING(head_a);
    for (int i = 0; i < ncopied; i++) {
        const char *p = i == top_via_at ? via_line : copied[i].p;
        Py_ssize_t n = i == top_via_at ? via_n : copied[i].n;
        memcpy(w, p, (size_t)n);
        w += n;
        if (i == to_at)
            w = PyBytes_AS_STRING(head_b);
        *w++ = '\r';
        *w++ = '\n';
    }
    Py_DECREF(via.line);
    result = PyTuple_New(7);
    PyObject *ruri_b = PyBytes_FromStringAndSize(ruri.p, ruri.n);
    PyObject *call_id_b = PyBytes_FromStringAndSize(single[K_CALL_ID].p, single[K_CALL_ID].n);
    PyObject *tag_b = PyBytes_FromStringAndSize(tag.p, tag.n);
    PyObject *items[7] = {ruri_b, call_id_b, tag_b, via.key, via.dest, head_a, head_b};
    if (result == NULL || ruri_b == NULL || call_id_b == NULL || tag_b == NULL) {
        Py_CLEAR(result);
        for (int i = 0; i < 7; i++)
            Py_XDECREF(items[i]);
        goto done;
    }
    for (int i = 0; i < 7; i++)
        PyTuple_SET_ITEM(result, i, items[i]);
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&buf);
    return result;
}

/* ack_key(data): (branch, host in lower case, port) of a raw ACK's top Via, as
 * `fast_via_branch(top_via_value(data))` (sip/fast.py, the reference) gives them; None where
 * those give None, and also for a Via value with a byte outside printable ASCII (the Python
 * path then answers). */
static PyObject *
ack_key(PyObject *Py_UNUSED(self), PyObject *arg)
{
    Py_buffer buf;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *data = buf.buf;
    Py_ssize_t size = buf.len, end = -1;
    PyObject *result = NULL;
    /* the head's end, the first CRLFCRLF (memchr: one call per line) */
    for (const char *cr = memchr(data, '\r', (size_t)size); cr != NULL;
         cr = memchr(cr + 1, '\r', (size_t)(data + size - cr - 1))) {
        Py_ssize_t i = cr - data;
        if (i + 3 >= size)
            break;
        if (data[i + 1] == '\n' && data[i + 2] == '\r' && data[i + 3] == '\n') {
            end = i;
            break;
        }
    }
    if (end <= 0 || (data[0] == '\r' && data[1] == '\n'))
        goto decline;
    /* folded lines (anywhere, as top_via_value checks), and the first line that starts
       with a V (within the head and its CRLF) */
    Py_ssize_t at = -1;
    for (const char *lf = memchr(data, '\n', (size_t)size); lf != NULL;
         lf = memchr(lf + 1, '\n', (size_t)(data + size - lf - 1))) {
        Py_ssize_t j = lf - data;
        if (j + 1 < size && (data[j + 1] == ' ' || data[j + 1] == '\t'))
            goto decline;
        if (at < 0 && j >= 1 && j - 1 < end && data[j - 1] == '\r' && (data[j + 1] | 0x20) == 'v')
            at = j + 1;
    }
    if (at < 0)
        goto decline;
    Py_ssize_t p = at + 1;
    if (p + 1 < size && (data[p] | 0x20) == 'i' && (data[p + 1] | 0x20) == 'a')
        p += 2; /* "Via", else the compact "v" */
    while (p < size && (data[p] == ' ' || data[p] == '\t'))
        p++;
    if (p >= end || data[p] != ':')
        goto decline; /* another header starting with a V first */
    Py_ssize_t v = p + 1, e = v;
    while (e < size && data[e] != '\r' && data[e] != '\n')
        e++;
    if (e + 1 >= size || data[e] != '\r' || data[e + 1] != '\n')
        goto decline;
    for (Py_ssize_t i = v; i < e; i++)
        if (data[i] == ',' || (unsigned char)data[i] >= 0x7f
            || ((unsigned char)data[i] < 0x20 && data[i] != '\t'))
            goto decline;
    while (v < e && (data[v] == ' ' || data[v] == '\t'))
        v++;
    while (e > v && (data[e - 1] == ' ' || data[e - 1] == '\t'))
        e--;
    span value = {data + v, e - v};
    /* fast_via_branch */
    if (value.n < 8 || memcmp(value.p, "SIP/2.0/", 8) != 0)
        goto decline;
    const char *sp = find(value, 8, ' ');
    if (sp == NULL)
        goto decline;
    const char *sm = find(value, sp - value.p, ';');
    if (sm == NULL)
        goto decline;
    span sent_by = {sp + 1, sm - sp - 1};
    span params = {sm + 1, value.p + value.n - sm - 1};
    if (sent_by.n == 0 || sent_by.p[0] == '[' || has(sent_by, ' '))
        goto decline;
    if (has(params, ' ') || has(params, '\t') || has(params, '"'))
        goto decline;
    const char *colon = find(sent_by, 0, ':');
    span host = {sent_by.p, colon ? colon - sent_by.p : sent_by.n};
    span port;
    if (colon && colon + 1 < sent_by.p + sent_by.n) {
        port.p = colon + 1;
        port.n = sent_by.p + sent_by.n - port.p;
        if (!all_digits(port) || port.p[0] == '0' || port.n > 5)
            goto decline;
    } else {
        span transport = {value.p + 8, sp - value.p - 8};
        port.p = (ieq(transport, "tls") || ieq(transport, "wss")) ? "5061" : "5060";
        port.n = 4;
    }
    Py_ssize_t start = 0;
    for (;;) {
        const char *next = find(params, start, ';');
        span param = {params.p + start, (next ? next - params.p : params.n) - start};
        span name = {param.p, param.n < 7 ? param.n : 7};
        if (ieq(name, "branch=")) {
            PyObject *host_s = PyUnicode_New(host.n, 127);
            if (host_s == NULL)
                goto done;
            Py_UCS1 *h = PyUnicode_1BYTE_DATA(host_s);
            for (Py_ssize_t i = 0; i < host.n; i++) {
                char c = host.p[i];
                h[i] = (Py_UCS1)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
            }
            /* printable ASCII (checked above): the strings are made without decoding */
            PyObject *branch_s = PyUnicode_New(param.n - 7, 127);
            PyObject *port_s = PyUnicode_New(port.n, 127);
            result = PyTuple_New(3);
            if (branch_s == NULL || port_s == NULL || result == NULL) {
                Py_XDECREF(branch_s);
                Py_XDECREF(port_s);
                Py_XDECREF(result);
                Py_DECREF(host_s);
                result = NULL;
                goto done;
            }
            memcpy(PyUnicode_1BYTE_DATA(branch_s), param.p + 7, (size_t)(param.n - 7));
            memcpy(PyUnicode_1BYTE_DATA(port_s), port.p, (size_t)port.n);
            PyTuple_SET_ITEM(result, 0, branch_s);
            PyTuple_SET_ITEM(result, 1, host_s);
            PyTuple_SET_ITEM(result, 2, port_s);
            goto done;
        }
        if (ieq(name, "branch"))
            goto decline;
        if (next == NULL)
            break;
        start = next - params.p + 1;
    }
decline:
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&buf);
    return result;
}

/* ------------------------------------------------------------------ SipHash-2-4 tags */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                              \
    do {                                                                      \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);             \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);             \
    } while (0)

static uint64_t
le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

typedef struct {
    uint64_t v0, v1, v2, v3;
    unsigned char tail[8];
    int tail_n;
    uint64_t total;
} sip_state;

static void
sip_init(sip_state *st, const unsigned char key[16])
{
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    st->v0 = 0x736f6d6570736575ULL ^ k0;
    st->v1 = 0x646f72616e646f6dULL ^ k1;
    st->v2 = 0x6c7967656e657261ULL ^ k0;
    st->v3 = 0x7465646279746573ULL ^ k1;
    st->tail_n = 0;
    st->total = 0;
}

static void
sip_block(sip_state *st, uint64_t m)
{
    uint64_t v0 = st->v0, v1 = st->v1, v2 = st->v2, v3 = st->v3;
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
    st->v0 = v0; st->v1 = v1; st->v2 = v2; st->v3 = v3;
}

static void
sip_update(sip_state *st, const unsigned char *p, Py_ssize_t n)
{
    st->total += (uint64_t)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        st->tail[st->tail_n++] = p[i];
        if (st->tail_n == 8) {
            sip_block(st, le64(st->tail));
            st->tail_n = 0;
        }
    }
}

static uint64_t
sip_final(sip_state *st)
{
    uint64_t b = st->total << 56;
    for (int i = 0; i < st->tail_n; i++)
        b |= (uint64_t)st->tail[i] << (8 * i);
    sip_block(st, b);
    uint64_t v0 = st->v0, v1 = st->v1, v2 = st->v2 ^ 0xff, v3 = st->v3;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static PyObject *
derived_tag(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "derived_tag(key, call_id, from_tag)");
        return NULL;
    }
    for (int i = 0; i < 3; i++) {
        if (!PyBytes_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "derived_tag takes bytes");
            return NULL;
        }
    }
    if (PyBytes_GET_SIZE(args[0]) != 16) {
        PyErr_SetString(PyExc_ValueError, "the tag key is 16 bytes");
        return NULL;
    }
    sip_state st;
    sip_init(&st, (const unsigned char *)PyBytes_AS_STRING(args[0]));
    sip_update(&st, (const unsigned char *)PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]));
    sip_update(&st, (const unsigned char *)"", 1); /* the zero byte between */
    sip_update(&st, (const unsigned char *)PyBytes_AS_STRING(args[2]), PyBytes_GET_SIZE(args[2]));
    uint64_t digest = sip_final(&st);
    static const char hex[] = "0123456789abcdef";
    char out[12];
    for (int i = 0; i < 6; i++) {
        unsigned byte = (unsigned)(digest >> (8 * i)) & 0xff;
        out[2 * i] = hex[byte >> 4];
        out[2 * i + 1] = hex[byte & 0xf];
    }
    return PyBytes_FromStringAndSize(out, 12);
}

static PyMethodDef methods[] = {
    {"scan_invite", (PyCFunction)(void (*)(void))scan_invite, METH_FASTCALL,
     "What a 302 needs from a raw INVITE; see calls/fast_path.py FastRedirect.scan."},
    {"ack_key", ack_key, METH_O,
     "(branch, host, port) of a raw ACK's top Via; see sip/fast.py fast_via_branch."},
    {"derived_tag", (PyCFunction)(void (*)(void))derived_tag, METH_FASTCALL,
     "A 302's To tag as 12 hex digits (bytes); see sip/tags.py derived_tag."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastsip",
    "The lean INVITE path's scan in C (calls/fast_path.py has the Python reference).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__fastsip(void)
{
    if (invite_str == NULL) {
        invite_str = PyUnicode_InternFromString("INVITE");
        if (invite_str == NULL)
            return NULL;
    }
    return PyModule_Create(&module);
}
