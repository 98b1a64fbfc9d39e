-- Where each CDN purge target stands in the change feed (ocsp_changes.seq):
-- every change at or below `seq` is purged there, or dead-lettered. Shared by
-- the nodes, raised with GREATEST, never lowered; read at start, so changes
-- committed while every node was down are purged by the first to start.
CREATE TABLE IF NOT EXISTS ocsp_cdn_positions (
    target     VARCHAR(64)     NOT NULL PRIMARY KEY,
    seq        BIGINT UNSIGNED NOT NULL,
    updated_at TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;
