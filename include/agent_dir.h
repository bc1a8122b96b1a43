/* AGENTDIR, the agent's files:
 *   cert.pem   its certificate, then the intermediates it sends (PEM)
 *   ca.pem     the trust anchor(s) for the gateway (PEM)
 *   key.pem    its private key (PKCS#8 PEM, 0600), or
 *   key.uri    the RFC 7512 URI of the key in a PKCS#11 token (never a PIN)
 *   .lock      taken (flock) while a renewal writes, so that several bridges sharing
 *              a directory renew once
 * The directory scripts/agent-issue writes (agents/ID/) has the same layout.
 *
 * Replacing the certificate and key is crash-safe: the new files are written whole
 * beside the old ones (cert.pem.new, then key.pem.new or key.uri.new), then the key
 * is renamed into place, then the certificate. agent_dir_load finishes or undoes an
 * interrupted replacement, whichever leaves a key that matches the certificate, so
 * the directory never stays with one that does not.
 *
 * Functions log what failed (with the path) and return 0/-1. They may be called from
 * any thread; two processes are kept apart by agent_dir_lock. */
#ifndef CERTGATE_AGENT_DIR_H
#define CERTGATE_AGENT_DIR_H
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "agent_cred.h"

/* Loads the credential in dir (recovering an interrupted replacement first) into
 * *out (one reference). Fails when a file is missing, unreadable or malformed, or
 * when the key is not the certificate's. */
int agent_dir_load(const char *dir, struct agent_cred **out);

/* 1 when dir holds a cert.pem, 0 when not, -1 on error. */
int agent_dir_has_cert(const char *dir);

/* Replaces the certificate (leaf, then chain) and key of dir as described above.
 * Exactly one of file_key (written to key.pem, 0600) and key_uri (written to
 * key.uri) is given; the other kind's file is removed afterwards. anchors, when not
 * NULL, replaces ca.pem first. dir is created (0700) when missing. */
int agent_dir_commit(const char *dir, X509 *leaf, STACK_OF(X509) *chain,
    EVP_PKEY *file_key, const char *key_uri, STACK_OF(X509) *anchors);

/* Takes the directory's renewal lock, waiting up to wait_s seconds. Returns the
 * lock's descriptor, or -1 (timed out or failed: logged). */
int agent_dir_lock(const char *dir, int wait_s);
void agent_dir_unlock(int fd);

/* Reads a PEM file of one or more certificates into a new stack. Returns NULL with
 * a message logged when the file is missing, unreadable or holds no certificate. */
STACK_OF(X509) *agent_dir_read_certs(const char *path);

#endif
