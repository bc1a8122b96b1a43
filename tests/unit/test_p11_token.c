/* The PKCS#11 layer against a temporary SoftHSM2 token: key generation inside the
 * token, loading by label/id, flags, PIN errors, RSA-PSS and concurrent signing.
 * Every token set-up command runs before the first p11_ call: PKCS#11 is not
 * fork-safe once C_Initialize has run in this process. */
#include "p11.h"
#include "check.h"

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define NSIGS 200

static char dir[] = "/tmp/p11tokXXXXXX";

static int
run(const char *cmd)
{
	int r;

	r = system(cmd);
	if (r != 0)
		fprintf(stderr, "command failed (%d): %s\n", r, cmd);
	return r;
}

/* CKA_SENSITIVE / CKA_EXTRACTABLE of the private key labelled label, as pkcs11-tool
 * reports them ("Access: sensitive, always sensitive, never extractable, local").
 * Returns 0, or -1 when no such key. */
static int
key_flags(const char *label, int *sensitive, int *extractable)
{
	char cmd[512], line[512];
	FILE *f;
	int found = 0, mine = 0;

	/* pkcs11-tool ignores --label when listing: read every private key and
	 * keep the block whose label line matches. */
	snprintf(cmd, sizeof(cmd), "pkcs11-tool --module " MODULE " --token-label t --login "
	    "--pin 1234 --list-objects --type privkey 2>/dev/null");
	if ((f = popen(cmd, "r")) == NULL)
		return -1;
	*sensitive = *extractable = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *a = strstr(line, "Access:"), *l = strstr(line, "label:");

		if (strstr(line, "Private Key Object") != NULL)
			mine = 0;
		if (l != NULL) {
			l += strlen("label:");
			l += strspn(l, " \t");
			l[strcspn(l, "\n")] = '\0';
			mine = strcmp(l, label) == 0;
			found |= mine;
		}
		if (a == NULL || !mine)
			continue;
		*sensitive = strstr(a, " sensitive") != NULL;
		*extractable = strstr(a, "extractable") != NULL &&
		    strstr(a, "never extractable") == NULL;
	}
	pclose(f);
	return found ? 0 : -1;
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f;

	f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static int
setup_token(char *conf, size_t conflen)
{
	char path[512], text[1024];

	if (access("/usr/bin/softhsm2-util", X_OK) != 0 &&
	    system("command -v softhsm2-util >/dev/null") != 0) {
		fprintf(stderr, "softhsm2-util is missing: apt-get install softhsm2\n");
		return -1;
	}
	if (access(MODULE, R_OK) != 0) {
		fprintf(stderr, "%s is missing: apt-get install softhsm2\n", MODULE);
		return -1;
	}
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/tokens", dir);
	if (mkdir(path, 0700) == -1)
		return -1;
	snprintf(conf, conflen, "%s/softhsm2.conf", dir);
	snprintf(text, sizeof(text), "directories.tokendir = %s/tokens\n"
	    "objectstore.backend = file\nlog.level = ERROR\n", dir);
	write_file(conf, text, 0600);
	setenv("SOFTHSM2_CONF", conf, 1);
	if (run("softhsm2-util --init-token --free --label t --pin 1234 --so-pin 5678"
	    " >/dev/null") != 0)
		return -1;
	if (run("pkcs11-tool --module " MODULE " --token-label t --login --pin 1234"
	    " --keypairgen --key-type rsa:2048 --label rsa1 --id 01 --sensitive"
	    " --usage-sign >/dev/null") != 0)
		return -1;
	if (run("pkcs11-tool --module " MODULE " --token-label t --login --pin 1234"
	    " --keypairgen --key-type EC:prime256v1 --label ext1 --id 02"
	    " --extractable --usage-sign >/dev/null") != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/user.pin", dir);
	write_file(path, "1234\n", 0600);
	snprintf(path, sizeof(path), "%s/wrong.pin", dir);
	write_file(path, "9999\n", 0600);
	return 0;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* A software copy of the public half, so verification never touches the token. */
static EVP_PKEY *
soft_pub(EVP_PKEY *pk)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	EVP_PKEY *pub;
	int n;

	if ((n = i2d_PUBKEY(pk, &der)) <= 0)
		return NULL;
	p = der;
	pub = d2i_PUBKEY(NULL, &p, n);
	OPENSSL_free(der);
	return pub;
}

static int
set_pss(EVP_PKEY_CTX *pc)
{
	return EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) > 0 &&
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) > 0;
}

/* Signs a message in the token and verifies it in software. 1 when it verifies. */
static int
sign_verify(EVP_PKEY *priv, EVP_PKEY *pub, int pss, int n)
{
	unsigned char msg[64], sig[1024];
	EVP_MD_CTX *mc = NULL;
	EVP_PKEY_CTX *pc;
	size_t siglen = sizeof(sig);
	int ok = 0;

	memset(msg, 'a' + n % 26, sizeof(msg));
	msg[0] = (unsigned char)n;
	if ((mc = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(mc, &pc, EVP_sha256(), NULL, priv) != 1 ||
	    (pss && !set_pss(pc)) ||
	    EVP_DigestSign(mc, sig, &siglen, msg, sizeof(msg)) != 1)
		goto done;
	EVP_MD_CTX_free(mc);
	if ((mc = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(mc, &pc, EVP_sha256(), NULL, pub) != 1 ||
	    (pss && !set_pss(pc)) ||
	    EVP_DigestVerify(mc, sig, siglen, msg, sizeof(msg)) != 1)
		goto done;
	ok = 1;
done:
	if (!ok)
		ERR_print_errors_fp(stderr);
	EVP_MD_CTX_free(mc);
	return ok;
}

struct worker {
	EVP_PKEY *priv, *pub;
	int pss, good;
};

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	int i;

	for (i = 0; i < NSIGS; i++)
		w->good += sign_verify(w->priv, w->pub, w->pss, i);
	ERR_clear_error();
	return NULL;
}

/* Closes every session of token "t" (as a token reset would), which also logs
 * the application out: p11_health must notice and recover. */
static int
drop_sessions(const char *module)
{
	CK_RV (*getfl)(CK_FUNCTION_LIST_PTR_PTR);
	CK_FUNCTION_LIST_PTR fl;
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16, i;
	CK_TOKEN_INFO ti;
	void *dl;
	int done = -1;

	if ((dl = dlopen(module, RTLD_NOW)) == NULL)
		return -1;
	*(void **)&getfl = dlsym(dl, "C_GetFunctionList");
	if (getfl == NULL || getfl(&fl) != CKR_OK ||
	    fl->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		goto out;
	for (i = 0; i < n; i++)
		if (fl->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    memcmp(ti.label, "t ", 2) == 0 &&
		    fl->C_CloseAllSessions(slots[i]) == CKR_OK)
			done = 0;
out:
	dlclose(dl);
	return done;
}

/* Runs p11_load_private_key with stderr captured into buf. */
static int
capture_load(const struct p11_defaults *d, const char *uri, char *buf, size_t len)
{
	char path[512];
	EVP_PKEY *pk = NULL;
	int fd, saved, r;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/stderr.txt", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	saved = dup(2);
	dup2(fd, 2);
	r = p11_load_private_key(d, uri, 0, &pk);
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, len - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	fprintf(stderr, "%s", buf);
	EVP_PKEY_free(pk);
	return r;
}

static void
test_concurrent(EVP_PKEY *priv, EVP_PKEY *pub, int pss)
{
	struct worker w[2];
	pthread_t th[2];
	int i;

	for (i = 0; i < 2; i++) {
		w[i].priv = priv;
		w[i].pub = pub;
		w[i].pss = pss;
		w[i].good = 0;
		CHECK(pthread_create(&th[i], NULL, worker_run, &w[i]) == 0);
	}
	for (i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		CHECK(w[i].good == NSIGS);
	}
}

int
main(void)
{
	char conf[512], pinfile[512], wrongpin[512], msg[4096];
	struct p11_defaults d = { 0 };
	EVP_PKEY *g1 = NULL, *g2 = NULL, *l1 = NULL, *l2 = NULL, *rsa = NULL;
	EVP_PKEY *ext = NULL, *pub1 = NULL, *pub2 = NULL, *rsapub = NULL;
	int sens = -1, extr = -1;
	long logins;

	if (setup_token(conf, sizeof(conf)) == -1) {
		CHECK(0);
		if (strchr(dir, 'X') == NULL)
			nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		CHECK_DONE();
	}
	snprintf(pinfile, sizeof(pinfile), "%s/user.pin", dir);
	snprintf(wrongpin, sizeof(wrongpin), "%s/wrong.pin", dir);
	/* P11_TEST_MODULE lets a developer slot pkcs11-spy in between. */
	d.module = getenv("P11_TEST_MODULE") ? getenv("P11_TEST_MODULE") : MODULE;
	d.token = "t";
	d.softhsm2_conf = conf;

	/* Wrong PIN first: once logged in, the login is shared by the whole process. */
	d.pin_file = wrongpin;
	CHECK(capture_load(&d, "pkcs11:object=rsa1;type=private", msg, sizeof(msg)) == -1);
	CHECK(strstr(msg, "CKR_PIN_INCORRECT") != NULL);
	CHECK(strstr(msg, "9999") == NULL);
	CHECK(capture_load(&d, "pkcs11:object=rsa1?pin-value=4321", msg, sizeof(msg)) == -1);
	CHECK(strstr(msg, "CKR_PIN_INCORRECT") != NULL);
	CHECK(strstr(msg, "4321") == NULL && strstr(msg, "pin-value=***") != NULL);
	CHECK(capture_load(&d, "pkcs11:token=nosuch;object=rsa1", msg, sizeof(msg)) == -1);
	CHECK(strstr(msg, "'nosuch' not found") != NULL);

	d.pin_file = pinfile;

	/* Two keys generated in one process, the second after libp11 listed keys. */
	CHECK(p11_generate_ec_key(&d, "pkcs11:object=gen1", &g1) == 0);
	CHECK(g1 != NULL);
	CHECK(p11_generate_ec_key(&d, "pkcs11:token=t;object=gen2;id=%aa%bb", &g2) == 0);
	CHECK(g2 != NULL);
	CHECK(p11_generate_ec_key(&d, "pkcs11:object=gen1", &l1) == -1 && l1 == NULL);
	CHECK(p11_generate_ec_key(&d, "pkcs11:object=rsa1", &l1) == -1 && l1 == NULL);
	CHECK(p11_generate_ec_key(&d, "pkcs11:id=%01", &l1) == -1);

	CHECK(p11_load_private_key(&d, "pkcs11:object=gen1;type=private", 0, &l1) == 0);
	CHECK(p11_load_private_key(&d, "pkcs11:id=%AA%BB", 0, &l2) == 0);
	CHECK(l1 != NULL && l2 != NULL);
	CHECK(key_flags("gen1", &sens, &extr) == 0);
	CHECK(sens == 1 && extr == 0);
	sens = extr = -1;
	CHECK(key_flags("gen2", &sens, &extr) == 0);
	CHECK(sens == 1 && extr == 0);
	CHECK(key_flags("nosuch", &sens, &extr) == -1);
	CHECK(p11_key_exists(&d, "pkcs11:object=gen2") == 1);
	CHECK(p11_key_exists(&d, "pkcs11:object=gen3") == 0);
	CHECK(p11_key_exists(&d, "pkcs11:id=%aa%bb") == 1);
	CHECK(p11_load_private_key(&d, "pkcs11:object=gen3", 0, &ext) == -1 && ext == NULL);
	CHECK(p11_load_private_key(&d, "pkcs11:object=gen1;id=%aa%bb", 0, &ext) == -1);
	/* Several keys, no name: ambiguous. */
	CHECK(p11_load_private_key(&d, "pkcs11:", 0, &ext) == -1);

	pub1 = soft_pub(g1);
	pub2 = soft_pub(l2);
	CHECK(pub1 != NULL && pub2 != NULL);
	CHECK(EVP_PKEY_get_base_id(pub1) == EVP_PKEY_EC);
	CHECK(sign_verify(g1, pub1, 0, 1));
	CHECK(sign_verify(l1, pub1, 0, 2));
	CHECK(sign_verify(g2, pub2, 0, 3));
	CHECK(sign_verify(l2, pub2, 0, 4));
	CHECK(!sign_verify(l2, pub1, 0, 5));
	ERR_clear_error();

	/* RSA made by pkcs11-tool, RSA-PSS through libp11's EVP_PKEY methods. */
	CHECK(key_flags("rsa1", &sens, &extr) == 0);
	CHECK(sens == 1 && extr == 0);
	CHECK(p11_load_private_key(&d, "pkcs11:token=t;object=rsa1;id=%01;type=private",
	    0, &rsa) == 0);
	CHECK(rsa != NULL && EVP_PKEY_get_base_id(rsa) == EVP_PKEY_RSA);
	rsapub = soft_pub(rsa);
	CHECK(rsapub != NULL);
	CHECK(sign_verify(rsa, rsapub, 1, 6));
	CHECK(sign_verify(rsa, rsapub, 0, 7));

	/* Extractable key: refused unless allowed. */
	CHECK(key_flags("ext1", &sens, &extr) == 0);
	CHECK(extr == 1);
	CHECK(capture_load(&d, "pkcs11:object=ext1", msg, sizeof(msg)) == -1);
	CHECK(strstr(msg, "tls.allow_extractable_key") != NULL);
	CHECK(p11_load_private_key(&d, "pkcs11:object=ext1", 1, &ext) == 0 && ext != NULL);

	CHECK(p11_health_check() == 1);

	test_concurrent(l1, pub1, 0);
	test_concurrent(rsa, rsapub, 1);

	CHECK(p11_health_check() == 1 && p11_health() == 1);

	/* Lost sessions and login: health re-opens and logs in from the PIN file,
	 * and reports 0 when it cannot; a failed login waits for its back-off. */
	CHECK(drop_sessions(d.module) == 0);
	CHECK(p11_health_check() == 1);
	CHECK(p11_health_check() == 1);
	CHECK(drop_sessions(d.module) == 0);
	CHECK(rename(pinfile, wrongpin) == 0);
	logins = p11_health_logins();
	CHECK(p11_health_check() == 0 && p11_health() == 0);
	CHECK(p11_health_logins() == logins + 1);
	CHECK(rename(wrongpin, pinfile) == 0);
	CHECK(p11_health_check() == 0);                 /* within the back-off: no login */
	CHECK(p11_health_logins() == logins + 1);
	p11_health_reset();
	CHECK(p11_health_check() == 1 && p11_health() == 1);

	/* A wrong PIN stops logins altogether until a reset: a probe loop must not
	 * burn the token's PIN retries. */
	CHECK(drop_sessions(d.module) == 0);
	write_file(pinfile, "000000\n", 0600);
	logins = p11_health_logins();
	CHECK(p11_health_check() == 0);
	p11_health_reset();     /* also clears the stop, but the PIN is still wrong */
	CHECK(p11_health_check() == 0);
	CHECK(p11_health_logins() == logins + 2);
	sleep(2);               /* past any back-off: the PIN stop alone holds logins */
	CHECK(p11_health_check() == 0 && p11_health_check() == 0);
	CHECK(p11_health_logins() == logins + 2);
	write_file(pinfile, "1234\n", 0600);
	p11_health_reset();
	CHECK(p11_health_check() == 1);
	/* Keys loaded before the reset keep SoftHSM object handles that died with
	 * the sessions: signing with them needs a re-load (not tested here). */

	EVP_PKEY_free(g1);
	EVP_PKEY_free(g2);
	EVP_PKEY_free(l1);
	EVP_PKEY_free(l2);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ext);
	EVP_PKEY_free(pub1);
	EVP_PKEY_free(pub2);
	EVP_PKEY_free(rsapub);
	p11_shutdown();
	p11_shutdown();
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	CHECK(access(dir, F_OK) != 0);
	CHECK_DONE();
}
