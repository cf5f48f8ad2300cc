/* Batched UDP I/O for the SIP sockets: recvmmsg(2) and sendmmsg(2), one system call and one
 * Python call per batch instead of one each per datagram (net/sip_transport.py uses these
 * where this module built, socket.recvmsg/recvfrom/sendto otherwise).
 *
 * recv_batch(fd, max, timestamps) reads up to `max` datagrams waiting on the non-blocking
 * socket `fd` and returns a list of (data, host, port, stamp):
 *   - host is rendered as socket.recvfrom renders it (getnameinfo, NI_NUMERICHOST; the
 *     hosts of the last few sources are cached, as one switch sends most datagrams);
 *   - stamp is the kernel's receive time (SO_TIMESTAMPNS, which the caller enabled) when
 *     `timestamps` is true and the kernel gave one, else 0.0;
 *   - an empty list when nothing waits; OSError for any other error (e.g. an ICMP error
 *     queued on the socket), as socket.recvfrom raises it.
 *
 * send_batch(fd, family, messages) sends `messages`, a list of (data, (host, port)) with
 * numeric hosts of `family`, and returns None when all were handed to the kernel, else a
 * list of (index, errno) of those that were not: errno 0 for a host that is not a numeric
 * address of `family` (the caller sends that one with socket.sendto), EAGAIN for a full send
 * buffer, anything else as sendto would have raised it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_BATCH 64
#define DATAGRAM 65535 /* socket.recvfrom(65535), as the Python path reads */
#define HOST_CACHE 8

static char buffers[MAX_BATCH][DATAGRAM];
static char controls[MAX_BATCH][CMSG_SPACE(sizeof(struct timespec))];

/* Rendered hosts of recent sources, keyed by address (family and address bytes, no port). */
static struct {
    int family;
    unsigned char addr[16];
    PyObject *host;
} host_cache[HOST_CACHE];
static int host_cache_next;

static PyObject *
host_of(const struct sockaddr_storage *ss, socklen_t len)
{
    const unsigned char *addr;
    size_t n;
    if (ss->ss_family == AF_INET) {
        addr = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
        n = 4;
    } else if (ss->ss_family == AF_INET6
               && ((const struct sockaddr_in6 *)ss)->sin6_scope_id == 0) {
        addr = (const unsigned char *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        n = 16;
    } else {
        addr = NULL; /* a scoped IPv6 address: rendered each time ("fe80::1%eth0") */
        n = 0;
    }
    if (addr != NULL)
        for (int i = 0; i < HOST_CACHE; i++)
            if (host_cache[i].host != NULL && host_cache[i].family == ss->ss_family
                && memcmp(host_cache[i].addr, addr, n) == 0)
                return Py_NewRef(host_cache[i].host);
    char text[NI_MAXHOST];
    int rc = getnameinfo((const struct sockaddr *)ss, len, text, sizeof text, NULL, 0,
                         NI_NUMERICHOST);
    if (rc != 0) {
        PyErr_Format(PyExc_OSError, "getnameinfo failed: %s", gai_strerror(rc));
        return NULL;
    }
    PyObject *host = PyUnicode_FromString(text);
    if (host == NULL || addr == NULL)
        return host;
    int slot = host_cache_next;
    host_cache_next = (host_cache_next + 1) % HOST_CACHE;
    Py_XDECREF(host_cache[slot].host);
    host_cache[slot].family = ss->ss_family;
    memcpy(host_cache[slot].addr, addr, n);
    host_cache[slot].host = Py_NewRef(host);
    return host;
}

static int
port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return 0;
}

static double
stamp_of(struct msghdr *msg)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS
            && c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        }
    return 0.0;
}

static PyObject *
recv_batch(PyObject *Py_UNUSED(self), PyObject *args)
{
    int fd, max, timestamps;
    if (!PyArg_ParseTuple(args, "iip:recv_batch", &fd, &max, &timestamps))
        return NULL;
    if (max < 1 || max > MAX_BATCH) {
        PyErr_Format(PyExc_ValueError, "max must be 1..%d", MAX_BATCH);
        return NULL;
    }
    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iovs[MAX_BATCH];
    struct sockaddr_storage sources[MAX_BATCH];
    memset(msgs, 0, sizeof(msgs[0]) * (size_t)max);
    for (int i = 0; i < max; i++) {
        iovs[i].iov_base = buffers[i];
        iovs[i].iov_len = DATAGRAM;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &sources[i];
        msgs[i].msg_hdr.msg_namelen = sizeof sources[i];
        if (timestamps) {
            msgs[i].msg_hdr.msg_control = controls[i];
            msgs[i].msg_hdr.msg_controllen = sizeof controls[i];
        }
    }
    int got;
    do
        got = recvmmsg(fd, msgs, (unsigned int)max, MSG_DONTWAIT, NULL);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return PyList_New(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *out = PyList_New(got);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < got; i++) {
        PyObject *host = host_of(&sources[i], msgs[i].msg_hdr.msg_namelen);
        if (host == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        double stamp = timestamps ? stamp_of(&msgs[i].msg_hdr) : 0.0;
        PyObject *item = Py_BuildValue("(y#Nid)", buffers[i], (Py_ssize_t)msgs[i].msg_len, host,
                                       port_of(&sources[i]), stamp);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

/* The destination (host, port) as a sockaddr of `family`: 1, 0 when the host is not a
 * numeric address of that family (or the port is out of range), -1 with an exception. */
static int
destination(PyObject *dest, int family, struct sockaddr_storage *ss, socklen_t *len)
{
    PyObject *host_o, *port_o;
    if (!PyTuple_Check(dest) || PyTuple_GET_SIZE(dest) < 2) {
        PyErr_SetString(PyExc_TypeError, "destination must be a (host, port) tuple");
        return -1;
    }
    host_o = PyTuple_GET_ITEM(dest, 0);
    port_o = PyTuple_GET_ITEM(dest, 1);
    const char *host = PyUnicode_Check(host_o) ? PyUnicode_AsUTF8(host_o) : NULL;
    if (host == NULL) {
        PyErr_Clear();
        return 0;
    }
    long port = PyLong_Check(port_o) ? PyLong_AsLong(port_o) : -1;
    if (port == -1 && PyErr_Occurred())
        PyErr_Clear();
    if (port < 0 || port > 65535)
        return 0;
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return 0;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *len = sizeof *sin;
        return 1;
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return 0; /* also a scoped address ("fe80::1%eth0"): socket.sendto knows those */
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *len = sizeof *sin6;
        return 1;
    }
    return 0;
}

static int
add_failure(PyObject **failures, Py_ssize_t index, int err)
{
    if (*failures == NULL && (*failures = PyList_New(0)) == NULL)
        return -1;
    PyObject *item = Py_BuildValue("(ni)", index, err);
    if (item == NULL)
        return -1;
    int rc = PyList_Append(*failures, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *
send_batch(PyObject *Py_UNUSED(self), PyObject *args)
{
    int fd, family;
    PyObject *messages;
    if (!PyArg_ParseTuple(args, "iiO!:send_batch", &fd, &family, &PyList_Type, &messages))
        return NULL;
    Py_ssize_t total = PyList_GET_SIZE(messages);
    PyObject *failures = NULL;
    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iovs[MAX_BATCH];
    struct sockaddr_storage dests[MAX_BATCH];
    Py_ssize_t index[MAX_BATCH];
    /* Every message is kept alive by `messages` (a list the caller does not touch meanwhile:
     * the GIL is held throughout), so pointing into its bytes is safe. */
    Py_ssize_t at = 0;
    while (at < total) {
        int n = 0;
        for (; at < total && n < MAX_BATCH; at++) {
            PyObject *item = PyList_GET_ITEM(messages, at);
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2
                || !PyBytes_Check(PyTuple_GET_ITEM(item, 0))) {
                PyErr_SetString(PyExc_TypeError, "messages must be (bytes, (host, port)) tuples");
                goto error;
            }
            socklen_t len = 0;
            int ok = destination(PyTuple_GET_ITEM(item, 1), family, &dests[n], &len);
            if (ok < 0)
                goto error;
            if (ok == 0) {
                if (add_failure(&failures, at, 0) < 0)
                    goto error;
                continue;
            }
            PyObject *data = PyTuple_GET_ITEM(item, 0);
            memset(&msgs[n], 0, sizeof msgs[n]);
            iovs[n].iov_base = PyBytes_AS_STRING(data);
            iovs[n].iov_len = (size_t)PyBytes_GET_SIZE(data);
            msgs[n].msg_hdr.msg_iov = &iovs[n];
            msgs[n].msg_hdr.msg_iovlen = 1;
            msgs[n].msg_hdr.msg_name = &dests[n];
            msgs[n].msg_hdr.msg_namelen = len;
            index[n] = at;
            n++;
        }
        int done = 0;
        while (done < n) {
            int sent = sendmmsg(fd, msgs + done, (unsigned int)(n - done), MSG_DONTWAIT);
            if (sent < 0 && errno == EINTR)
                continue;
            if (sent <= 0) { /* the message at `done` failed: report it, go on after it */
                if (add_failure(&failures, index[done], sent < 0 ? errno : EAGAIN) < 0)
                    goto error;
                done++;
            } else
                done += sent;
        }
    }
    if (failures == NULL)
        Py_RETURN_NONE;
    return failures;
error:
    Py_XDECREF(failures);
    return NULL;
}

static PyMethodDef methods[] = {
    {"recv_batch", recv_batch, METH_VARARGS,
     "recv_batch(fd, max, timestamps) -> [(data, host, port, stamp)]: recvmmsg(2)."},
    {"send_batch", send_batch, METH_VARARGS,
     "send_batch(fd, family, [(data, (host, port))]) -> None | [(index, errno)]: sendmmsg(2)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_udpio", "Batched UDP I/O for the SIP sockets (recvmmsg, sendmmsg).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__udpio(void)
{
    return PyModule_Create(&module);
}
