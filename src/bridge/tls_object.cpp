// coachwhip._core.TlsContext: the --ssl-* settings loaded and checked (tls::context). Python
// makes one before serving — a mistake is a ValueError whose message is the one line the user
// sees — logs `description` and `warnings`, and passes it to Server(tls=...). The supervisor
// makes one too, only to check the files before it starts workers (and again on SIGHUP).
#include <memory>
#include <new>
#include <string>

#include "bridge/objects.hpp"
#include "bridge/py.hpp"
#include "tls/context.hpp"

namespace coachwhip::bridge {
namespace {

struct tls_object {
    PyObject_HEAD std::shared_ptr<const tls::context> ctx;  // constructed in place by tp_new
};

PyObject* tls_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
    PyObject* self = PyType_GenericNew(type, args, kwds);
    if (self) new (&reinterpret_cast<tls_object*>(self)->ctx) std::shared_ptr<const tls::context>();
    return self;
}

// A str argument or None into `out` (None: leave it); false with an exception set.
bool text_arg(PyObject* arg, const char* name, std::string& out) {
    if (arg == Py_None) return true;
    Py_ssize_t n = 0;
    const char* s = PyUnicode_Check(arg) ? PyUnicode_AsUTF8AndSize(arg, &n) : nullptr;
    if (!s) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "%s must be a str or None", name);
        return false;
    }
    out.assign(s, static_cast<size_t>(n));
    return true;
}

int tls_init(PyObject* self, PyObject* args, PyObject* kwds) {
    static const char* kwlist[] = {"certfile",  "keyfile", "password",    "ca_certs",
                                   "cert_reqs", "ciphers", "min_version", "ticket_secret",
                                   "alpn",      nullptr};
    PyObject *certfile, *keyfile = Py_None, *password = Py_None, *ca_certs = Py_None;
    PyObject *ciphers = Py_None, *min_version = Py_None;
    PyObject* secret = Py_None;
    PyObject* alpn = Py_None;  // a str of comma-separated protocols, most preferred first
    int cert_reqs = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$OOOiOOOO", const_cast<char**>(kwlist),
                                     &certfile, &keyfile, &password, &ca_certs, &cert_reqs,
                                     &ciphers, &min_version, &secret, &alpn))
        return -1;
    tls::settings s;
    if (alpn != Py_None) {
        std::string list;
        if (!text_arg(alpn, "alpn", list)) return -1;
        s.alpn.clear();
        for (size_t start = 0; start <= list.size();) {
            const size_t end = std::min(list.find(',', start), list.size());
            if (end > start) s.alpn.push_back(list.substr(start, end - start));
            start = end + 1;
        }
        if (s.alpn.empty()) {
            PyErr_SetString(PyExc_ValueError, "alpn must name at least one protocol");
            return -1;
        }
    }
    if (secret != Py_None) {
        if (!PyBytes_Check(secret)) {
            PyErr_SetString(PyExc_TypeError, "ticket_secret must be bytes or None");
            return -1;
        }
        s.ticket_secret.assign(PyBytes_AS_STRING(secret),
                               static_cast<size_t>(PyBytes_GET_SIZE(secret)));
    }
    std::string version = "1.2";
    if (!text_arg(certfile, "certfile", s.certfile) || !text_arg(keyfile, "keyfile", s.keyfile) ||
        !text_arg(password, "password", s.password) ||
        !text_arg(ca_certs, "ca_certs", s.ca_certs) || !text_arg(ciphers, "ciphers", s.ciphers) ||
        !text_arg(min_version, "min_version", version))
        return -1;
    if (cert_reqs < 0 || cert_reqs > 2) {
        PyErr_Format(PyExc_ValueError,
                     "--ssl-cert-reqs %d: use 0 (none), 1 (optional) or 2 (required)", cert_reqs);
        return -1;
    }
    s.cert_reqs = cert_reqs;
    if (version != "1.2" && version != "1.3") {
        PyErr_Format(PyExc_ValueError, "--ssl-min-version '%s': use 1.2 or 1.3", version.c_str());
        return -1;
    }
    s.min_version = version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
    std::string error;
    std::unique_ptr<tls::context> ctx;
    Py_BEGIN_ALLOW_THREADS ctx = tls::context::load(s, error);  // reads files: no GIL needed
    Py_END_ALLOW_THREADS if (!ctx) {
        PyErr_SetString(PyExc_ValueError, error.c_str());
        return -1;
    }
    reinterpret_cast<tls_object*>(self)->ctx = std::move(ctx);
    return 0;
}

void tls_dealloc(PyObject* self) {
    reinterpret_cast<tls_object*>(self)->ctx.~shared_ptr();
    PyTypeObject* type = Py_TYPE(self);
    type->tp_free(self);
    Py_DECREF(type);
}

const tls::context* loaded(PyObject* self) {
    const tls::context* c = reinterpret_cast<tls_object*>(self)->ctx.get();
    if (!c) PyErr_SetString(PyExc_RuntimeError, "TlsContext is not initialised");
    return c;
}

PyObject* str_of(const std::string& s) {
    return PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
}

PyObject* tls_get_description(PyObject* self, void*) {
    const tls::context* c = loaded(self);
    return c ? str_of(c->description()) : nullptr;
}

PyObject* tls_get_warnings(PyObject* self, void*) {
    const tls::context* c = loaded(self);
    if (!c) return nullptr;
    py::ref out(PyTuple_New(static_cast<Py_ssize_t>(c->warnings().size())));
    for (size_t i = 0; out && i < c->warnings().size(); ++i) {
        PyObject* w = str_of(c->warnings()[i]);
        if (!w) return nullptr;
        PyTuple_SET_ITEM(out.get(), static_cast<Py_ssize_t>(i), w);
    }
    return out.release();
}

PyObject* tls_get_server_cert(PyObject* self, void*) {
    const tls::context* c = loaded(self);
    return c ? str_of(c->server_cert_pem()) : nullptr;
}

PyGetSetDef tls_getset[] = {
    {"description", tls_get_description, nullptr,
     "One line for the log: subject, SANs, expiry, key type.", nullptr},
    {"warnings", tls_get_warnings, nullptr, "Problems that do not stop the server.", nullptr},
    {"server_cert", tls_get_server_cert, nullptr, "The leaf certificate served, PEM.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyType_Slot tls_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(tls_new)},
    {Py_tp_init, reinterpret_cast<void*>(tls_init)},
    {Py_tp_dealloc, reinterpret_cast<void*>(tls_dealloc)},
    {Py_tp_getset, tls_getset},
    {Py_tp_doc, const_cast<char*>("TlsContext(certfile, *, keyfile, password, ca_certs, "
                                  "cert_reqs, ciphers, min_version, ticket_secret)")},
    {0, nullptr}};

PyType_Spec tls_spec = {"coachwhip._core.TlsContext", sizeof(tls_object), 0, Py_TPFLAGS_DEFAULT,
                        tls_slots};

PyObject* tls_type = nullptr;  // borrowed from the module, which outlives every Server

}  // namespace

bool init_tls_type(PyObject* module) {
    PyObject* type = PyType_FromModuleAndSpec(module, &tls_spec, nullptr);
    if (!type) return false;
    tls_type = type;
    int r = PyModule_AddObjectRef(module, "TlsContext", type);
    Py_DECREF(type);
    return r == 0;
}

bool tls_context_of(PyObject* obj, std::shared_ptr<const tls::context>& out) {
    if (obj == Py_None) return true;
    if (!tls_type || !PyObject_TypeCheck(obj, reinterpret_cast<PyTypeObject*>(tls_type))) {
        PyErr_SetString(PyExc_TypeError, "tls must be a TlsContext or None");
        return false;
    }
    out = reinterpret_cast<tls_object*>(obj)->ctx;
    if (!out) PyErr_SetString(PyExc_RuntimeError, "TlsContext is not initialised");
    return out != nullptr;
}

}  // namespace coachwhip::bridge
