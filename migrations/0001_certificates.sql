-- ocsp-origin schema, version 1: one row per certificate.
--
-- A CA's issuance pipeline INSERTs a row when it issues a certificate (status 0,
-- revision 1) and UPDATEs it on revocation, always incrementing `revision`
-- (`ocsp-origin revoke` does exactly that). The responder only reads.
CREATE TABLE IF NOT EXISTS ocsp_certificates (
  issuer     VARCHAR(64)       NOT NULL COMMENT 'issuer name, as [[issuer]] name in the config',
  serial     VARBINARY(21)     NOT NULL COMMENT 'serial: DER INTEGER content octets (minimal, a 0x00 first where the high bit is set)',
  status     TINYINT UNSIGNED  NOT NULL COMMENT '0 good, 1 revoked',
  revoked_at BIGINT UNSIGNED   NULL     COMMENT 'revocation time, Unix seconds (status 1)',
  reason     TINYINT UNSIGNED  NULL     COMMENT 'RFC 5280 CRLReason code (status 1); NULL or 0 = unspecified',
  not_after  BIGINT UNSIGNED   NOT NULL COMMENT 'certificate notAfter, Unix seconds',
  revision   BIGINT UNSIGNED   NOT NULL DEFAULT 1 COMMENT 'incremented by every change of the row',
  PRIMARY KEY (issuer, serial)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
