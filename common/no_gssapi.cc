// Stands in for Kerberos (libgssapi_krb5) when orq links Debian's libzmq.a (ORQ_STATIC_DEPS).
//
// libzmq.a refers to these for its GSSAPI security mechanism. orq never enables that mechanism
// (no socket sets ZMQ_GSSAPI_SERVER or ZMQ_GSSAPI_CLIENT: peers use CURVE, or nothing over ipc),
// so libzmq never calls them; and Debian ships Kerberos only as shared libraries, whose loading
// (seven of them) was a quarter of every CLI call's start. Should a call ever come, it fails, so a
// GSSAPI handshake can never succeed: security fails closed. The signatures are checked against
// Kerberos's own header.
#include <gssapi/gssapi.h>

namespace {

OM_uint32 Refuse(OM_uint32* minor) {
  if (minor != nullptr) *minor = 0;
  return GSS_S_FAILURE;
}

}  // namespace

extern "C" {

gss_OID GSS_C_NT_HOSTBASED_SERVICE = GSS_C_NO_OID;
gss_OID GSS_C_NT_USER_NAME = GSS_C_NO_OID;

OM_uint32 gss_accept_sec_context(OM_uint32* minor, gss_ctx_id_t*, gss_cred_id_t, gss_buffer_t,
                                 gss_channel_bindings_t, gss_name_t*, gss_OID*, gss_buffer_t,
                                 OM_uint32*, OM_uint32*, gss_cred_id_t*) {
  return Refuse(minor);
}
OM_uint32 gss_acquire_cred(OM_uint32* minor, gss_name_t, OM_uint32, gss_OID_set, gss_cred_usage_t,
                           gss_cred_id_t*, gss_OID_set*, OM_uint32*) {
  return Refuse(minor);
}
OM_uint32 gss_delete_sec_context(OM_uint32* minor, gss_ctx_id_t*, gss_buffer_t) {
  return Refuse(minor);
}
OM_uint32 gss_display_name(OM_uint32* minor, gss_name_t, gss_buffer_t, gss_OID*) {
  return Refuse(minor);
}
OM_uint32 gss_import_name(OM_uint32* minor, gss_buffer_t, gss_OID, gss_name_t*) {
  return Refuse(minor);
}
OM_uint32 gss_init_sec_context(OM_uint32* minor, gss_cred_id_t, gss_ctx_id_t*, gss_name_t, gss_OID,
                               OM_uint32, OM_uint32, gss_channel_bindings_t, gss_buffer_t, gss_OID*,
                               gss_buffer_t, OM_uint32*, OM_uint32*) {
  return Refuse(minor);
}
OM_uint32 gss_release_buffer(OM_uint32* minor, gss_buffer_t) { return Refuse(minor); }
OM_uint32 gss_release_cred(OM_uint32* minor, gss_cred_id_t*) { return Refuse(minor); }
OM_uint32 gss_release_name(OM_uint32* minor, gss_name_t*) { return Refuse(minor); }
OM_uint32 gss_unwrap(OM_uint32* minor, gss_ctx_id_t, gss_buffer_t, gss_buffer_t, int*, gss_qop_t*) {
  return Refuse(minor);
}
OM_uint32 gss_wrap(OM_uint32* minor, gss_ctx_id_t, int, gss_qop_t, gss_buffer_t, int*,
                   gss_buffer_t) {
  return Refuse(minor);
}

}  // extern "C"
