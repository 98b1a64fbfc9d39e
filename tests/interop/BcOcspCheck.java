// A second strict OCSP client beside `openssl ocsp`: Bouncy Castle asks a
// running server about serials of one issuer and judges each answer the way a
// Java relying party does. It finds the SingleResponse by CertificateID
// equality, which compares the whole CertID (hash AlgorithmIdentifier
// parameters included: NULL and absent differ), so it catches a server that
// answers with a re-encoded CertID. It also checks the signature against the
// issuer or the delegated responder certificate in the response, the
// ResponderID, the times, and the status and revocation reason.
//
// Run as a single source file (Java 11+), with Debian's Bouncy Castle jars:
//
//   java -cp /usr/share/java/bcprov.jar:/usr/share/java/bcpkix.jar:/usr/share/java/bcutil.jar \
//       tests/interop/BcOcspCheck.java --url URL --issuer ca.pem [--responder resp.pem] CHECK...
//
// Each CHECK is HASH:PARAMS:SERIAL:EXPECT[:REASON], one OCSP request each:
//   HASH    sha1 | sha256
//   PARAMS  null (the hash AlgorithmIdentifier carries NULL parameters, as
//           OpenSSL and BC's CertificateID.HASH_SHA1 do) | absent; or
//           SENT/LOOKUP (null/absent, absent/null): send one form, look the
//           SingleResponse up under the other (a test proving that a
//           differently encoded CertID does not match)
//   SERIAL  the certificate serial, hex
//   EXPECT  good | revoked | unknown, or an error responseStatus:
//           malformedRequest | internalError | tryLater | sigRequired | unauthorized
//   REASON  with revoked: the CRLReason name (keyCompromise, superseded, ...);
//           without it the revoked answer must carry no reason
//
// --responder: the answers must be signed by this delegated responder
// certificate, included in the response and issued by the issuer; without it,
// by the issuer itself.
//
// Prints one line per check ("ok ..." or "FAIL ..."); exits 0 when every check
// passed, 1 when one failed, 2 on bad arguments.

import java.io.ByteArrayOutputStream;
import java.io.FileReader;
import java.io.InputStream;
import java.io.OutputStream;
import java.math.BigInteger;
import java.net.HttpURLConnection;
import java.net.URL;
import java.security.Provider;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import java.util.Map;

import org.bouncycastle.asn1.ASN1Encodable;
import org.bouncycastle.asn1.DERNull;
import org.bouncycastle.asn1.nist.NISTObjectIdentifiers;
import org.bouncycastle.asn1.oiw.OIWObjectIdentifiers;
import org.bouncycastle.asn1.x509.AlgorithmIdentifier;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.ocsp.BasicOCSPResp;
import org.bouncycastle.cert.ocsp.CertificateID;
import org.bouncycastle.cert.ocsp.CertificateStatus;
import org.bouncycastle.cert.ocsp.OCSPReqBuilder;
import org.bouncycastle.cert.ocsp.OCSPResp;
import org.bouncycastle.cert.ocsp.RespID;
import org.bouncycastle.cert.ocsp.RevokedStatus;
import org.bouncycastle.cert.ocsp.SingleResp;
import org.bouncycastle.cert.ocsp.UnknownStatus;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.operator.DigestCalculatorProvider;
import org.bouncycastle.operator.jcajce.JcaContentVerifierProviderBuilder;
import org.bouncycastle.operator.jcajce.JcaDigestCalculatorProviderBuilder;

public class BcOcspCheck {
    static final Provider BC = new BouncyCastleProvider();

    /** OCSPResponseStatus names (RFC 6960 4.2.1) by value. */
    static final Map<Integer, String> RESPONSE_STATUS = Map.of(
            0, "successful", 1, "malformedRequest", 2, "internalError", 3, "tryLater", 5, "sigRequired",
            6, "unauthorized");

    /** CRLReason names (RFC 5280 5.3.1) by value. */
    static final Map<Integer, String> REASONS = Map.ofEntries(
            Map.entry(0, "unspecified"), Map.entry(1, "keyCompromise"), Map.entry(2, "cACompromise"),
            Map.entry(3, "affiliationChanged"), Map.entry(4, "superseded"),
            Map.entry(5, "cessationOfOperation"), Map.entry(6, "certificateHold"),
            Map.entry(8, "removeFromCRL"), Map.entry(9, "privilegeWithdrawn"), Map.entry(10, "aACompromise"));

    /** A mismatch: the message says what was wrong. */
    static class Mismatch extends Exception {
        Mismatch(String msg) {
            super(msg);
        }
    }

    static void usage(String why) {
        System.err.println("BcOcspCheck: " + why);
        System.err.println("usage: BcOcspCheck --url URL --issuer CA.pem [--responder RESP.pem] "
                + "HASH:PARAMS[/LOOKUP]:SERIAL:EXPECT[:REASON]...");
        System.exit(2);
    }

    public static void main(String[] args) throws Exception {
        String url = null, issuerFile = null, responderFile = null;
        List<String> checks = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            boolean hasValue = i + 1 < args.length;
            if (a.equals("--url") && hasValue) {
                url = args[++i];
            } else if (a.equals("--issuer") && hasValue) {
                issuerFile = args[++i];
            } else if (a.equals("--responder") && hasValue) {
                responderFile = args[++i];
            } else if (a.startsWith("--")) {
                usage("unknown option or missing value: " + a);
            } else {
                checks.add(a);
            }
        }
        if (url == null || issuerFile == null || checks.isEmpty()) {
            usage("--url, --issuer and at least one check are required");
        }
        X509CertificateHolder issuer = readCert(issuerFile);
        X509CertificateHolder responder = responderFile == null ? null : readCert(responderFile);
        int failed = 0;
        for (String check : checks) {
            try {
                String said = check(url, issuer, responder, check);
                System.out.println("ok " + check + ": " + said);
            } catch (Mismatch e) {
                failed++;
                System.out.println("FAIL " + check + ": " + e.getMessage());
            } catch (Exception e) {
                // Undecodable answers, refused connections: a failed check too.
                failed++;
                System.out.println("FAIL " + check + ": " + e);
            }
        }
        System.exit(failed == 0 ? 0 : 1);
    }

    static X509CertificateHolder readCert(String file) throws Exception {
        try (PEMParser p = new PEMParser(new FileReader(file))) {
            Object o = p.readObject();
            if (!(o instanceof X509CertificateHolder)) {
                usage(file + " holds no PEM certificate");
            }
            return (X509CertificateHolder) o;
        }
    }

    /** The CertID hash AlgorithmIdentifier, parameters NULL or absent, built by hand. */
    static AlgorithmIdentifier hashAlg(String hash, String params) throws Mismatch {
        boolean withNull = switch (params) {
            case "null" -> true;
            case "absent" -> false;
            default -> throw new Mismatch("PARAMS must be null or absent, not " + params);
        };
        switch (hash) {
            case "sha1":
                // BC's own default: CertificateID.HASH_SHA1 carries NULL.
                return withNull ? CertificateID.HASH_SHA1 : new AlgorithmIdentifier(OIWObjectIdentifiers.idSHA1);
            case "sha256":
                return withNull ? new AlgorithmIdentifier(NISTObjectIdentifiers.id_sha256, DERNull.INSTANCE)
                        : new AlgorithmIdentifier(NISTObjectIdentifiers.id_sha256);
            default:
                throw new Mismatch("HASH must be sha1 or sha256, not " + hash);
        }
    }

    /**
     * BC's CertificateID for `serial` of `issuer`: BC computes the name and key
     * hashes; the AlgorithmIdentifier is ours (the digest calculator reports
     * the one it was asked for), checked to keep the parameters as chosen.
     */
    static CertificateID certId(X509CertificateHolder issuer, String hash, String params, BigInteger serial)
            throws Exception {
        AlgorithmIdentifier alg = hashAlg(hash, params);
        DigestCalculatorProvider digests = new JcaDigestCalculatorProviderBuilder().setProvider(BC).build();
        CertificateID id = new CertificateID(digests.get(alg), issuer, serial);
        ASN1Encodable p = id.toASN1Primitive().getHashAlgorithm().getParameters();
        boolean isNull = p != null && DERNull.INSTANCE.equals(p.toASN1Primitive());
        if (isNull != params.equals("null") || (p != null && !isNull)) {
            throw new Mismatch("BC built the CertID with other hash parameters than " + params);
        }
        return id;
    }

    /** One check: request, answer, verdict (what the answer said), or a Mismatch. */
    static String check(String url, X509CertificateHolder issuer, X509CertificateHolder responder,
            String spec) throws Exception {
        String[] f = spec.split(":");
        if (f.length < 4 || f.length > 5) {
            throw new Mismatch("a check is HASH:PARAMS[/LOOKUP]:SERIAL:EXPECT[:REASON]");
        }
        String hash = f[0], expect = f[3], reason = f.length == 5 ? f[4] : null;
        String[] params = f[1].split("/", 2);
        BigInteger serial = new BigInteger(f[2], 16);
        CertificateID sent = certId(issuer, hash, params[0], serial);
        CertificateID wanted = params.length == 1 ? sent : certId(issuer, hash, params[1], serial);

        byte[] reqDer = new OCSPReqBuilder().addRequest(sent).build().getEncoded();
        OCSPResp resp = new OCSPResp(post(url, reqDer));

        String status = RESPONSE_STATUS.getOrDefault(resp.getStatus(), "status " + resp.getStatus());
        boolean wantsCertStatus = expect.equals("good") || expect.equals("revoked") || expect.equals("unknown");
        if (!wantsCertStatus) {
            if (!status.equals(expect)) {
                throw new Mismatch("responseStatus " + status + ", expected " + expect);
            }
            if (resp.getResponseObject() != null) {
                throw new Mismatch("error response " + status + " carries responseBytes");
            }
            return status;
        }
        if (resp.getStatus() != OCSPResp.SUCCESSFUL) {
            throw new Mismatch("responseStatus " + status + ", expected a " + expect + " answer");
        }
        if (!(resp.getResponseObject() instanceof BasicOCSPResp)) {
            throw new Mismatch("the response is not an id-pkix-ocsp-basic response");
        }
        BasicOCSPResp basic = (BasicOCSPResp) resp.getResponseObject();
        String signer = verifySignature(basic, issuer, responder);

        SingleResp match = null;
        for (SingleResp r : basic.getResponses()) {
            if (r.getCertID().equals(wanted)) {
                match = r;
            }
        }
        if (match == null) {
            StringBuilder got = new StringBuilder();
            for (SingleResp r : basic.getResponses()) {
                got.append(' ').append(describe(r.getCertID()));
            }
            throw new Mismatch("no SingleResponse matches CertID " + describe(wanted) + "; got" + got);
        }
        checkTimes(basic, match);
        return judgeStatus(match.getCertStatus(), expect, reason) + ", signed by " + signer;
    }

    /** The CertID as hash(params)/serial, to read in a failure. */
    static String describe(CertificateID id) {
        AlgorithmIdentifier a = id.toASN1Primitive().getHashAlgorithm();
        String p = a.getParameters() == null ? "absent" : a.getParameters().toASN1Primitive().toString();
        String serial = id.getSerialNumber().toString(16).toUpperCase();
        return a.getAlgorithm() + "(params " + p + ")/" + (serial.length() % 2 == 1 ? "0" : "") + serial;
    }

    /**
     * Verifies the response signature against its signer: the delegated
     * responder certificate it includes (issued by the issuer, EKU
     * id-kp-OCSPSigning, within its validity), which must be `responder` if
     * given; otherwise the issuer. The ResponderID must name the signer.
     */
    static String verifySignature(BasicOCSPResp basic, X509CertificateHolder issuer,
            X509CertificateHolder responder) throws Exception {
        X509CertificateHolder[] certs = basic.getCerts();
        X509CertificateHolder signer = issuer;
        if (responder != null) {
            signer = null;
            for (X509CertificateHolder c : certs) {
                if (c.equals(responder)) {
                    signer = c;
                }
            }
            if (signer == null) {
                throw new Mismatch("the delegated responder certificate is not in the response ("
                        + certs.length + " certs)");
            }
            if (!signer.isSignatureValid(new JcaContentVerifierProviderBuilder().setProvider(BC).build(issuer))) {
                throw new Mismatch("the responder certificate is not signed by the issuer");
            }
            ExtendedKeyUsage eku = ExtendedKeyUsage.fromExtensions(signer.getExtensions());
            if (eku == null || !eku.hasKeyPurposeId(KeyPurposeId.id_kp_OCSPSigning)) {
                throw new Mismatch("the responder certificate lacks EKU id-kp-OCSPSigning");
            }
            if (!signer.isValidOn(new Date())) {
                throw new Mismatch("the responder certificate is not valid now");
            }
        }
        DigestCalculatorProvider digests = new JcaDigestCalculatorProviderBuilder().setProvider(BC).build();
        RespID byKey = new RespID(signer.getSubjectPublicKeyInfo(), digests.get(RespID.HASH_SHA1));
        RespID byName = new RespID(signer.getSubject());
        if (!basic.getResponderId().equals(byKey) && !basic.getResponderId().equals(byName)) {
            throw new Mismatch("the ResponderID names neither the key nor the name of " + signer.getSubject());
        }
        if (!basic.isSignatureValid(new JcaContentVerifierProviderBuilder().setProvider(BC).build(signer))) {
            throw new Mismatch("the response signature does not verify with " + signer.getSubject());
        }
        return signer.getSubject().toString();
    }

    /** producedAt and thisUpdate not in the future (5 min of skew), nextUpdate present and ahead. */
    static void checkTimes(BasicOCSPResp basic, SingleResp r) throws Mismatch {
        long now = System.currentTimeMillis(), skew = 5 * 60 * 1000;
        if (basic.getProducedAt().getTime() > now + skew) {
            throw new Mismatch("producedAt " + basic.getProducedAt() + " is in the future");
        }
        if (r.getThisUpdate().getTime() > now + skew) {
            throw new Mismatch("thisUpdate " + r.getThisUpdate() + " is in the future");
        }
        if (r.getNextUpdate() == null) {
            throw new Mismatch("no nextUpdate");
        }
        if (r.getNextUpdate().getTime() <= now || !r.getNextUpdate().after(r.getThisUpdate())) {
            throw new Mismatch("nextUpdate " + r.getNextUpdate() + " is not ahead");
        }
    }

    static String judgeStatus(CertificateStatus st, String expect, String reason) throws Mismatch {
        String got;
        String gotReason = null;
        if (st == CertificateStatus.GOOD) {
            got = "good";
        } else if (st instanceof RevokedStatus) {
            got = "revoked";
            RevokedStatus rs = (RevokedStatus) st;
            if (rs.hasRevocationReason()) {
                int v = rs.getRevocationReason();
                gotReason = REASONS.getOrDefault(v, "reason " + v);
            }
        } else if (st instanceof UnknownStatus) {
            got = "unknown";
        } else {
            got = "unrecognised status " + st;
        }
        if (!got.equals(expect)) {
            throw new Mismatch("status " + got + ", expected " + expect);
        }
        if (got.equals("revoked")) {
            if (reason == null ? gotReason != null : !reason.equals(gotReason)) {
                throw new Mismatch("revocation reason " + (gotReason == null ? "none" : gotReason)
                        + ", expected " + (reason == null ? "none" : reason));
            }
            return "revoked (" + gotReason + ")";
        }
        return got;
    }

    /** POSTs an OCSP request; the body of a 200 application/ocsp-response answer. */
    static byte[] post(String url, byte[] body) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URL(url).openConnection();
        c.setConnectTimeout(10_000);
        c.setReadTimeout(10_000);
        c.setRequestMethod("POST");
        c.setDoOutput(true);
        c.setRequestProperty("Content-Type", "application/ocsp-request");
        try (OutputStream o = c.getOutputStream()) {
            o.write(body);
        }
        int code = c.getResponseCode();
        if (code != 200) {
            throw new Mismatch("HTTP " + code + " from " + url);
        }
        if (!"application/ocsp-response".equals(c.getContentType())) {
            throw new Mismatch("Content-Type " + c.getContentType() + ", expected application/ocsp-response");
        }
        try (InputStream in = c.getInputStream()) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            in.transferTo(out);
            return out.toByteArray();
        }
    }
}
