import CreditStore
import Logging
import NIOCore
import PostgresNIO

/// The tables and every statement the PostgreSQL store runs.
///
/// Schema version 3 (a row per version in `creditd_schema`; a newer version than this build
/// knows is refused, an older one is brought up to date by `migrations`):
///
///   creditd_leader          one row (id 1): holder, epoch, expires_at. The writer lease.
///   creditd_journal         sequence (primary key, gap-free from 1), epoch of the writer,
///                           committed_at (the writing transaction's start), payload bytea
///                           (a journal entry, opaque to the store). A statement trigger NOTIFYs
///                           `creditd_journal` on every insert.
///   creditd_snapshot        sequence (the last record it includes), epoch, written_at, bytes, chunks
///   creditd_snapshot_chunk  (sequence, chunk) → data bytea, at most `snapshotChunkBytes` each
///   creditd_append()        (version 2) the fenced append as a function, so that each
///                           connection plans it once (`append`); version 3 dates the lease
///                           by the clock when the row is held, not the transaction's start
///
/// A snapshot row and its chunks commit together, after a fence check in the same transaction.
/// The newest snapshot and the one before it are kept; journal records the older one covers are
/// deleted with it, as the file store does with segments.
enum Schema {
    static let version: Int32 = 3
    static let channel = "creditd_journal"
    /// Serializes table creation between hosts starting at once.
    static let creationLock: Int64 = 0x6372_6564_6974_6431  // "creditd1"

    static let creation: [String] = [
        "CREATE TABLE IF NOT EXISTS creditd_schema (version integer PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now())",
        """
        CREATE TABLE IF NOT EXISTS creditd_leader (id integer PRIMARY KEY CHECK (id = 1), holder text NOT NULL,
            epoch bigint NOT NULL, expires_at timestamptz NOT NULL)
        """,
        "INSERT INTO creditd_leader (id, holder, epoch, expires_at) VALUES (1, '', 0, '-infinity') ON CONFLICT (id) DO NOTHING",
        """
        CREATE TABLE IF NOT EXISTS creditd_journal (sequence bigint PRIMARY KEY, epoch bigint NOT NULL,
            committed_at timestamptz NOT NULL DEFAULT now(), payload bytea NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS creditd_snapshot (sequence bigint PRIMARY KEY, epoch bigint NOT NULL,
            written_at timestamptz NOT NULL DEFAULT now(), bytes bigint NOT NULL, chunks integer NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS creditd_snapshot_chunk (
            sequence bigint NOT NULL REFERENCES creditd_snapshot (sequence) ON DELETE CASCADE,
            chunk integer NOT NULL, data bytea NOT NULL, PRIMARY KEY (sequence, chunk))
        """,
        """
        CREATE OR REPLACE FUNCTION creditd_journal_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('creditd_journal', ''); RETURN NULL; END $$
        """,
        "DROP TRIGGER IF EXISTS creditd_journal_notify ON creditd_journal",
        """
        CREATE TRIGGER creditd_journal_notify AFTER INSERT ON creditd_journal
            FOR EACH STATEMENT EXECUTE FUNCTION creditd_journal_notify()
        """,
    ]

    /// What each version adds to the one before it; a new database gets `creation` and then all
    /// of these. Only additions: a host of the previous build keeps working beside the new one
    /// until it restarts (and then refuses the newer schema).
    static let migrations: [(version: Int32, statements: [String])] = [
        // Version 2 added `creditd_append`; version 3 replaces it, so a database below 2 gets
        // only version 3's (same signature).
        (2, []),
        (3, [
            // The fenced append as a function: it renews the lease where it still names this
            // node and epoch and has not expired, and inserts the batch only if that found the
            // row; it returns how many records it inserted (0: fenced). PL/pgSQL keeps the
            // statement's plan for the session: planning it took the database 0.1-0.6 ms, more
            // than running it, once for every batch.
            //
            // It locks the lease row first, then checks and renews the lease by
            // `clock_timestamp()`, as `takeLease` and `renewLease` do. Version 2's function
            // went straight to the UPDATE with `now()`: an UPDATE computes its new values and
            // checks its condition before it waits for a row lock (a renewal or a takeover holds
            // the row for a moment), and checks again only if the row changed
            // meanwhile, so the renewed lease was dated from before the wait, and a lease that
            // ran out during the wait still counted as held. Now an append whose lease has run
            // out by the time it holds the row is refused, and otherwise renews a whole lease
            // from then. The signature is unchanged, so a host of the previous build calls
            // this one too.
            """
            CREATE OR REPLACE FUNCTION creditd_append(p_node text, p_epoch bigint, p_lease_ms bigint,
                p_sequences bigint[], p_payloads bytea[]) RETURNS bigint LANGUAGE plpgsql AS $$
            DECLARE inserted bigint;
            BEGIN
                PERFORM 1 FROM creditd_leader WHERE id = 1 FOR NO KEY UPDATE;
                WITH fence AS (
                    UPDATE creditd_leader SET expires_at = clock_timestamp() + p_lease_ms * interval '1 millisecond'
                    WHERE id = 1 AND holder = p_node AND epoch = p_epoch AND expires_at > clock_timestamp()
                    RETURNING epoch)
                INSERT INTO creditd_journal (sequence, epoch, payload)
                SELECT r.sequence, fence.epoch, r.payload FROM fence, unnest(p_sequences, p_payloads) AS r(sequence, payload);
                GET DIAGNOSTICS inserted = ROW_COUNT;
                RETURN inserted;
            END $$
            """,
        ]),
    ]

    // MARK: start-up (blocking, on the recovery thread)

    /// Runs `query` and waits for its whole result, for `limit` at most (`boundedStep`'s
    /// reason, for the start's blocking thread): a start whose statement was dropped as the
    /// database went down would wait for ever, its heartbeat extending systemd's start timeout.
    /// At the limit the connection is closed and the start fails.
    static func run(_ query: PostgresQuery, on connection: PostgresConnection, within limit: Duration,
                    logger: Logger) throws -> PostgresQueryResult {
        let result = BoundedWait<PostgresQueryResult>(on: connection.eventLoop)
        connection.query(query, logger: logger).whenComplete { result.settle($0) }
        return try result.wait("starting", atMost: limit, whenTimerFires: { closeInBackground(connection) })
    }

    static func prepare(_ connection: PostgresConnection, within limit: Duration, logger: Logger) throws {
        func run(_ sql: String) throws -> PostgresQueryResult {
            try Schema.run(PostgresQuery(unsafeSQL: sql), on: connection, within: limit, logger: logger)
        }
        _ = try run("BEGIN")
        do {
            // Another host creating or upgrading the schema, or a host's snapshot upload in the
            // way of an upgrade's ALTER, may take longer than the session's lock_timeout (a
            // lease): the start waits as long as its own limit instead.
            _ = try run("SELECT set_config('lock_timeout', '\(PostgresJournalStore.millis(limit))', true)")
            _ = try run("SELECT pg_advisory_xact_lock(\(creationLock))")
            let existing = try run("SELECT to_regclass('creditd_schema') IS NOT NULL")
            let exists = try existing.rows.first?.decode(Bool.self) ?? false
            var found: Int32 = 0
            if exists {
                found = try run("SELECT coalesce(max(version), 0) FROM creditd_schema").rows.first?.decode(Int32.self) ?? 0
                if found > version {
                    throw PostgresStoreError.schema("the database holds schema version \(found); this build knows up to \(version)")
                }
                // creditd creates its tables and records version 1 in one transaction, so an
                // empty table is not one of its own: migrating from "version 0" recorded
                // versions for tables that were never created, and every later start failed.
                if found == 0 {
                    throw PostgresStoreError.schema("""
                        creditd_schema exists but records no version: it was not created by creditd (or was \
                        emptied by hand); drop it, or point creditd at a database of its own
                        """)
                }
            } else {
                for statement in creation { _ = try run(statement) }
                _ = try run("INSERT INTO creditd_schema (version) VALUES (1) ON CONFLICT DO NOTHING")
                found = 1
            }
            for migration in migrations where migration.version > found {
                for statement in migration.statements { _ = try run(statement) }
                _ = try run("INSERT INTO creditd_schema (version) VALUES (\(migration.version)) ON CONFLICT DO NOTHING")
            }
            if !exists {
                logger.notice("created the creditd tables", metadata: ["schema_version": "\(version)"])
            } else if found < version {
                logger.notice("brought the creditd tables up to date", metadata: [
                    "schema_version": "\(version)", "was": "\(found)"])
            }
            _ = try run("COMMIT")
        } catch {
            _ = try? run("ROLLBACK")
            throw error
        }
    }

    /// The newest snapshot and every record after it, checked for gaps.
    static func recover(_ connection: PostgresConnection, within limit: Duration, logger: Logger) throws -> Recovery {
        func run(_ query: PostgresQuery) throws -> PostgresQueryResult {
            try Schema.run(query, on: connection, within: limit, logger: logger)
        }
        let snapshotQuery: PostgresQuery = """
            SELECT sequence, (extract(epoch FROM written_at) * 1000)::int8, bytes, chunks
            FROM creditd_snapshot ORDER BY sequence DESC LIMIT 1
            """
        var snapshot: RecoveredSnapshot?
        if let row = try run(snapshotQuery).rows.first {
            let (sequence, millis, bytes, chunks) = try row.decode((Int64, Int64, Int64, Int32).self)
            let chunkQuery: PostgresQuery = "SELECT data FROM creditd_snapshot_chunk WHERE sequence = \(sequence) ORDER BY chunk"
            let rows = try run(chunkQuery).rows
            var payload: [UInt8] = []
            payload.reserveCapacity(Int(bytes))
            for row in rows {
                let buffer = try row.decode(ByteBuffer.self)
                payload.append(contentsOf: buffer.readableBytesView)
            }
            guard rows.count == Int(chunks), payload.count == Int(bytes) else {
                throw PostgresStoreError.recovery(
                    "snapshot \(sequence) has \(rows.count) of \(chunks) chunks, \(payload.count) of \(bytes) bytes")
            }
            snapshot = RecoveredSnapshot(sequence: UInt64(sequence), payload: payload, unixMillis: millis,
                                         name: "snapshot \(sequence)")
        }
        let after = Int64(snapshot?.sequence ?? 0)
        let journalQuery: PostgresQuery = "SELECT sequence, payload FROM creditd_journal WHERE sequence > \(after) ORDER BY sequence"
        var records: [JournalRecord] = []
        var expected = UInt64(after) + 1
        for row in try run(journalQuery).rows {
            let (sequence, payload) = try row.decode((Int64, ByteBuffer).self)
            guard UInt64(sequence) == expected else {
                throw PostgresStoreError.recovery("journal record \(expected) is missing (next is \(sequence))")
            }
            records.append(JournalRecord(sequence: UInt64(sequence), payload: Array(payload.readableBytesView)))
            expected += 1
        }
        return Recovery(snapshot: snapshot, records: records, nextSequence: expected)
    }

    // MARK: the fenced append (blocking, on the writer's thread)

    /// The fenced append: one statement, hence one transaction (`creditd_append`, above).
    /// Its result is the number of records inserted; 0 means fenced.
    static func append(node: String, epoch: UInt64, leaseMillis: Int64, sequences: [Int64], payloads: [ByteBuffer]) -> PostgresQuery {
        "SELECT creditd_append(\(node), \(Int64(epoch)), \(leaseMillis), \(sequences), \(payloads))"
    }

    // MARK: lease and replay (async)

    struct Leader {
        var holder: String
        var epoch: UInt64
        /// Not expired by the database's clock.
        var live: Bool
    }

    static func leader(_ connection: PostgresConnection, logger: Logger) async throws -> Leader {
        let rows = try await connection.query(
            "SELECT holder, epoch, expires_at > now() FROM creditd_leader WHERE id = 1", logger: logger)
        for try await (holder, epoch, live) in rows.decode((String, Int64, Bool).self) {
            return Leader(holder: holder, epoch: UInt64(epoch), live: live)
        }
        throw PostgresStoreError.schema("the creditd_leader row is missing")
    }

    /// Takes the lease with the next epoch if it expired (or already names this node, e.g. after
    /// a database restart). Returns the new epoch, or nil if another node holds it.
    static func takeLease(_ connection: PostgresConnection, node: String, leaseMillis: Int64, logger: Logger) async throws -> UInt64? {
        try await connection.withTransaction(logger: logger) { connection in
            try await lockLeaderRow(connection, forTakeover: true, logger: logger)
            let rows = try await connection.query("""
                UPDATE creditd_leader SET holder = \(node), epoch = epoch + 1,
                    expires_at = clock_timestamp() + \(leaseMillis) * interval '1 millisecond'
                WHERE id = 1 AND (expires_at <= clock_timestamp() OR holder = \(node))
                RETURNING epoch
                """, logger: logger)
            for try await epoch in rows.decode(Int64.self) { return UInt64(epoch) }
            return nil
        }
    }

    /// Takes the lease row's lock, waiting for whoever holds it, before the lease's expiry is
    /// compared or computed, and then reads the clock at that point (`clock_timestamp()`, not
    /// `now()`, the transaction's start). An `UPDATE` computes its new values before it waits
    /// for a row's lock, and a paused holder's snapshot transaction holds this row (FOR KEY
    /// SHARE): a takeover that waited longer than a lease set an expiry already past, and the
    /// paused host, once resumed, took the lease straight back.
    ///
    /// A takeover locks it FOR UPDATE, which waits for a snapshot in progress (its FOR KEY
    /// SHARE); a renewal FOR NO KEY UPDATE, as an append does, which does not: the holder's own
    /// snapshot must not hold up its renewals. The two still wait for each other.
    private static func lockLeaderRow(_ connection: PostgresConnection, forTakeover: Bool, logger: Logger) async throws {
        let rows = try await connection.query(
            forTakeover ? "SELECT id FROM creditd_leader WHERE id = 1 FOR UPDATE"
                        : "SELECT id FROM creditd_leader WHERE id = 1 FOR NO KEY UPDATE", logger: logger)
        for try await _ in rows {}
    }

    /// The newest snapshot, whole (a standby the journal's pruning left behind starts over from it).
    static func newestSnapshot(_ connection: PostgresConnection, logger: Logger) async throws -> RecoveredSnapshot? {
        let rows = try await connection.query("""
            SELECT sequence, (extract(epoch FROM written_at) * 1000)::int8, bytes, chunks
            FROM creditd_snapshot ORDER BY sequence DESC LIMIT 1
            """, logger: logger)
        var found: (Int64, Int64, Int64, Int32)?
        for try await row in rows.decode((Int64, Int64, Int64, Int32).self) { found = row }
        guard let (sequence, millis, bytes, chunks) = found else { return nil }
        let chunkRows = try await connection.query(
            "SELECT data FROM creditd_snapshot_chunk WHERE sequence = \(sequence) ORDER BY chunk", logger: logger)
        var payload: [UInt8] = []
        payload.reserveCapacity(Int(bytes))
        var count = 0
        for try await buffer in chunkRows.decode(ByteBuffer.self) {
            payload.append(contentsOf: buffer.readableBytesView)
            count += 1
        }
        guard count == Int(chunks), payload.count == Int(bytes) else {
            throw PostgresStoreError.recovery("snapshot \(sequence) has \(count) of \(chunks) chunks, \(payload.count) of \(bytes) bytes")
        }
        return RecoveredSnapshot(sequence: UInt64(sequence), payload: payload, unixMillis: millis, name: "snapshot \(sequence)")
    }

    /// Extends the lease if this node still holds it under `epoch`; false: lost. By the clock once
    /// the row is locked, as `takeLease`.
    static func renewLease(_ connection: PostgresConnection, node: String, epoch: UInt64, leaseMillis: Int64,
                           logger: Logger) async throws -> Bool {
        try await connection.withTransaction(logger: logger) { connection in
            try await lockLeaderRow(connection, forTakeover: false, logger: logger)
            let rows = try await connection.query("""
                UPDATE creditd_leader SET expires_at = clock_timestamp() + \(leaseMillis) * interval '1 millisecond'
                WHERE id = 1 AND holder = \(node) AND epoch = \(Int64(epoch)) AND expires_at > clock_timestamp()
                RETURNING epoch
                """, logger: logger)
            for try await _ in rows.decode(Int64.self) { return true }
            return false
        }
    }

    /// Lets the lease expire now, so that a standby takes over without waiting.
    static func releaseLease(_ connection: PostgresConnection, node: String, epoch: UInt64, logger: Logger) async throws {
        try await connection.query("""
            UPDATE creditd_leader SET expires_at = now()
            WHERE id = 1 AND holder = \(node) AND epoch = \(Int64(epoch))
            """, logger: logger)
    }

    /// Inside a snapshot's transaction, first: if this host pauses mid-transaction (SIGSTOP, a
    /// frozen VM) for longer than `millis`, the server ends its session. The transaction holds
    /// the lease row FOR KEY SHARE (below), and a standby's takeover waits for that lock: without
    /// this bound, a host paused during a snapshot kept the standby from taking over until it
    /// resumed, however long that took. A pause that long has let the lease run out anyway.
    /// With `wholeSession`, for every later transaction of the connection: the lease loop's
    /// renewals and takeovers lock the lease row too, and a host paused inside one held a
    /// standby's takeover the same way.
    static func limitIdleInTransaction(_ connection: PostgresConnection, millis: Int64, wholeSession: Bool = false,
                                       logger: Logger) async throws {
        try await setMillis("idle_in_transaction_session_timeout", millis, transactionOnly: !wholeSession, connection, logger)
    }

    /// Inside a transaction: lock waits of its later statements end after `millis` instead of
    /// the session's `lock_timeout` (a lease). A snapshot's rows may wait for another upload
    /// or a maintenance lock much longer than its check of the lease row should.
    static func limitLockWaits(_ connection: PostgresConnection, millis: Int64, logger: Logger) async throws {
        try await setMillis("lock_timeout", millis, transactionOnly: true, connection, logger)
    }

    /// Sets a server setting in milliseconds, for the transaction or for the whole session.
    private static func setMillis(_ setting: String, _ millis: Int64, transactionOnly: Bool,
                                  _ connection: PostgresConnection, _ logger: Logger) async throws {
        let rows = try await connection.query("""
            SELECT set_config(\(setting), \(String(millis)), \(transactionOnly))
            """, logger: logger)
        for try await _ in rows {}
    }

    /// Inside a snapshot's transaction: the lease still names this node and epoch; the row stays
    /// locked until commit, so a takeover waits for the snapshot or fences it. FOR KEY SHARE,
    /// which only a takeover's FOR UPDATE waits for: the host's own appends and renewals lock
    /// the row FOR NO KEY UPDATE and go on while it uploads. Under FOR SHARE they waited for
    /// the whole snapshot, and one that took longer than a lease (hundreds of megabytes at a
    /// million subscriptions) had every append in the meantime time out as "outcome unknown".
    static func holdsLease(_ connection: PostgresConnection, node: String, epoch: UInt64, logger: Logger) async throws -> Bool {
        let rows = try await connection.query("""
            SELECT epoch FROM creditd_leader
            WHERE id = 1 AND holder = \(node) AND epoch = \(Int64(epoch)) AND expires_at > now() FOR KEY SHARE
            """, logger: logger)
        for try await _ in rows.decode(Int64.self) { return true }
        return false
    }

    struct FetchedRecord {
        var record: JournalRecord
        /// From the writing transaction's start to this fetch, by the database's clock.
        var lagSeconds: Double
    }

    static func records(_ connection: PostgresConnection, after sequence: UInt64, limit: Int,
                        logger: Logger) async throws -> [FetchedRecord] {
        let rows = try await connection.query("""
            SELECT sequence, payload, extract(epoch FROM clock_timestamp() - committed_at)::float8
            FROM creditd_journal WHERE sequence > \(Int64(sequence)) ORDER BY sequence LIMIT \(limit)
            """, logger: logger)
        var fetched: [FetchedRecord] = []
        for try await (sequence, payload, lag) in rows.decode((Int64, ByteBuffer, Double).self) {
            fetched.append(FetchedRecord(record: JournalRecord(sequence: UInt64(sequence), payload: Array(payload.readableBytesView)),
                                         lagSeconds: max(0, lag)))
        }
        return fetched
    }

    /// Writes a snapshot's row and chunks, then drops what the previous snapshot makes
    /// unnecessary: older snapshots and the journal records the previous one covers.
    static func insertSnapshot(_ connection: PostgresConnection, sequence: UInt64, epoch: UInt64, chunks: [[UInt8]],
                               bytes: Int, logger: Logger) async throws {
        let seq = Int64(sequence)
        let chunkCount = chunks.count
        try await connection.query("DELETE FROM creditd_snapshot WHERE sequence = \(seq)", logger: logger)
        try await connection.query("""
            INSERT INTO creditd_snapshot (sequence, epoch, bytes, chunks)
            VALUES (\(seq), \(Int64(epoch)), \(Int64(bytes)), \(Int32(chunkCount)))
            """, logger: logger)
        // A few chunks per statement: bounded memory per message, few round trips.
        var index = 0
        while index < chunkCount {
            let group = min(8, chunkCount - index)
            var numbers: [Int32] = []
            var data: [ByteBuffer] = []
            for chunk in index..<(index + group) {
                numbers.append(Int32(chunk))
                data.append(ByteBuffer(bytes: chunks[chunk]))
            }
            try await connection.query("""
                INSERT INTO creditd_snapshot_chunk (sequence, chunk, data)
                SELECT \(seq), c.chunk, c.data FROM unnest(\(numbers)::int4[], \(data)::bytea[]) AS c(chunk, data)
                """, logger: logger)
            index += group
        }
        try await connection.query("""
            DELETE FROM creditd_snapshot WHERE sequence < (SELECT max(sequence) FROM creditd_snapshot WHERE sequence < \(seq))
            """, logger: logger)
        try await connection.query("""
            DELETE FROM creditd_journal WHERE sequence <= (SELECT max(sequence) FROM creditd_snapshot WHERE sequence < \(seq))
            """, logger: logger)
    }
}
