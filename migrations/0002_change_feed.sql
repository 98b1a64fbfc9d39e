-- ocsp-origin schema, version 2: the change feed.
--
-- Every committed change of `ocsp_certificates`, by any writer (ocsp-origin's
-- own commands, the CA's pipeline with plain SQL, a DBA's console), leaves a
-- row in `ocsp_changes`, written by the triggers below in the writer's own
-- transaction. Each responder node reads that outbox from the primary
-- (`seq > ?`, every `feed.poll_interval_ms`) and drops or fences what it
-- caches about the certificate: no writer has to tell the responders.
--
-- The triggers also own `ocsp_certificates.revision`: a row's revision is the
-- `seq` of the outbox row of its last change, so revisions grow across every
-- change of every row, a re-inserted (or REPLACEd) row never goes back to an
-- older revision, and a writer need not set it at all (what it sets is
-- overwritten). An UPDATE that changes none of the status columns keeps the
-- row's revision and leaves no outbox row.
--
-- A BEFORE trigger cannot know whether its row change will happen (INSERT …
-- ON DUPLICATE KEY UPDATE fires BEFORE INSERT and then updates instead), so
-- it writes a placeholder ('P') to take the next seq; the AFTER trigger of the
-- change that did happen fills it in ('I', 'U'). A committed 'P' row is a
-- change that was not made; readers skip it.
--
-- A delete's row carries the deleted row's revision + 1: what a reader must
-- see to know a copy of the row is not the deleted one. REPLACE deletes the
-- old row *after* its BEFORE INSERT took a seq, so its 'D' row comes after the
-- new row's 'I' with the same revision; the change with the highest revision
-- is the row's state, and at equal revisions a non-'D' change wins.
--
-- TRUNCATE TABLE fires no trigger: do not truncate `ocsp_certificates` under
-- running responders. Creating triggers with binary logging on needs SUPER
-- (or log_bin_trust_function_creators = 1) for the account that runs
-- `ocsp-origin db migrate`; use binlog_format MIXED (MariaDB's default) or ROW.
CREATE TABLE IF NOT EXISTS ocsp_changes (
  seq        BIGINT UNSIGNED   NOT NULL AUTO_INCREMENT COMMENT 'feed position; the revision this change gave the row',
  issuer     VARCHAR(64)       NOT NULL COMMENT 'ocsp_certificates.issuer of the changed row',
  serial     VARBINARY(21)     NOT NULL COMMENT 'ocsp_certificates.serial of the changed row',
  op         CHAR(1)           NOT NULL COMMENT 'I inserted, U updated, D deleted, P placeholder of a change not made',
  revision   BIGINT UNSIGNED   NOT NULL DEFAULT 0 COMMENT 'I, U: the row''s new revision (= seq); D: the deleted row''s revision + 1',
  status     TINYINT UNSIGNED  NULL     COMMENT 'the row''s status after the change (NULL for D)',
  revoked_at BIGINT UNSIGNED   NULL     COMMENT 'the row''s revoked_at after the change',
  reason     TINYINT UNSIGNED  NULL     COMMENT 'the row''s reason after the change',
  changed_at TIMESTAMP(6)      NOT NULL DEFAULT CURRENT_TIMESTAMP(6) COMMENT 'when the writing statement began',
  PRIMARY KEY (seq),
  KEY ocsp_changes_by_time (changed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Revisions written before this migration were per-row counters: start the
-- sequence above every one of them, so no change ever gets a lower revision
-- than a row already has. A placeholder row holds that position (readers
-- skip 'P' rows, pruning keeps the newest): a server that recomputes
-- AUTO_INCREMENT from the table at restart (MySQL 5.7, MariaDB < 10.2.4)
-- cannot go below it even while no change has been written yet.
SET @ocsp_next_revision = (SELECT COALESCE(MAX(revision), 0) + 1 FROM ocsp_certificates);
INSERT IGNORE INTO ocsp_changes (seq, issuer, serial, op) VALUES (@ocsp_next_revision, '', '', 'P');

-- The AFTER triggers go first, and only ever fill in the placeholder their
-- row change took: until the BEFORE triggers exist they change nothing. Stop
-- the CA's writers while this runs (well under a second): a change between
-- two of these statements may miss the feed, as changes before the migration
-- do.
DROP TRIGGER IF EXISTS ocsp_certificates_after_insert;
CREATE TRIGGER ocsp_certificates_after_insert AFTER INSERT ON ocsp_certificates FOR EACH ROW
  UPDATE ocsp_changes SET op = 'I', revision = NEW.revision, status = NEW.status, revoked_at = NEW.revoked_at,
    reason = NEW.reason
  WHERE seq = NEW.revision AND op = 'P' AND issuer = NEW.issuer AND serial = NEW.serial;

DROP TRIGGER IF EXISTS ocsp_certificates_after_update;
CREATE TRIGGER ocsp_certificates_after_update AFTER UPDATE ON ocsp_certificates FOR EACH ROW
BEGIN
  IF NEW.revision <> OLD.revision THEN
    UPDATE ocsp_changes SET op = 'U', revision = NEW.revision, status = NEW.status, revoked_at = NEW.revoked_at,
      reason = NEW.reason
    WHERE seq = NEW.revision AND op = 'P' AND issuer = NEW.issuer AND serial = NEW.serial;
    IF NOT (NEW.issuer <=> OLD.issuer AND NEW.serial <=> OLD.serial) THEN
      INSERT INTO ocsp_changes (issuer, serial, op, revision) VALUES (OLD.issuer, OLD.serial, 'D', OLD.revision + 1);
    END IF;
  END IF;
END;

DROP TRIGGER IF EXISTS ocsp_certificates_after_delete;
CREATE TRIGGER ocsp_certificates_after_delete AFTER DELETE ON ocsp_certificates FOR EACH ROW
  INSERT INTO ocsp_changes (issuer, serial, op, revision) VALUES (OLD.issuer, OLD.serial, 'D', OLD.revision + 1);

DROP TRIGGER IF EXISTS ocsp_certificates_before_insert;
CREATE TRIGGER ocsp_certificates_before_insert BEFORE INSERT ON ocsp_certificates FOR EACH ROW
BEGIN
  INSERT INTO ocsp_changes (issuer, serial, op) VALUES (NEW.issuer, NEW.serial, 'P');
  SET NEW.revision = LAST_INSERT_ID();
END;

DROP TRIGGER IF EXISTS ocsp_certificates_before_update;
CREATE TRIGGER ocsp_certificates_before_update BEFORE UPDATE ON ocsp_certificates FOR EACH ROW
BEGIN
  IF NEW.issuer <=> OLD.issuer AND NEW.serial <=> OLD.serial AND NEW.status <=> OLD.status
     AND NEW.revoked_at <=> OLD.revoked_at AND NEW.reason <=> OLD.reason
     AND NEW.not_after <=> OLD.not_after THEN
    SET NEW.revision = OLD.revision;
  ELSE
    INSERT INTO ocsp_changes (issuer, serial, op) VALUES (NEW.issuer, NEW.serial, 'P');
    SET NEW.revision = LAST_INSERT_ID();
  END IF;
END;
