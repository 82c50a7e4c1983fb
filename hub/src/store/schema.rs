//! Versioned migrations, one list per engine. A released migration is never edited: add a
//! new one. SQLite keeps the history it grew with; PostgreSQL starts from the same schema in
//! its own types (BIGINT, BYTEA, identity columns).

/// SQLite migrations, in order.
pub const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "accounts, tenants, enrollment tokens",
        "
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'customer')),
        created_at INTEGER NOT NULL
    );
    CREATE TABLE tenants (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        owner_id INTEGER REFERENCES accounts(id),
        public_key BLOB,
        enrolled_at INTEGER,
        last_heartbeat_at INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE enrollment_tokens (
        token_hash BLOB PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        created_at INTEGER NOT NULL
    );
    ",
    ),
    (
        2,
        "sessions, heartbeats, approvals, grants, policy bundles, commands, audit",
        "
    ALTER TABLE tenants ADD COLUMN hostname TEXT;
    ALTER TABLE tenants ADD COLUMN agent_version TEXT;
    ALTER TABLE tenants ADD COLUMN policy_version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tenants ADD COLUMN heartbeat TEXT;
    CREATE INDEX tenants_owner ON tenants(owner_id);
    CREATE TABLE sessions (
        token_hash BLOB PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        agent TEXT NOT NULL,
        tier TEXT NOT NULL,
        reasons TEXT NOT NULL,
        summary TEXT NOT NULL,
        action TEXT NOT NULL,
        action_hash TEXT NOT NULL,
        tenant_created_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
        decided_by TEXT,
        decided_at INTEGER,
        scope TEXT,
        reason TEXT
    );
    CREATE INDEX approvals_tenant_status ON approvals(tenant_id, status, received_at);
    CREATE INDEX approvals_pending_expiry ON approvals(status, expires_at);
    CREATE TABLE grants (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        request_id TEXT NOT NULL UNIQUE REFERENCES approvals(id),
        signed TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX grants_tenant_seq ON grants(tenant_id, seq);
    CREATE TABLE policy_bundles (
        version INTEGER PRIMARY KEY,
        bundle TEXT NOT NULL,
        published_by TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        kind TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        acked_at INTEGER
    );
    CREATE INDEX commands_open ON commands(tenant_id, acked_at);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        tenant_id INTEGER,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_tenant ON audit(tenant_id, id);
    ",
    ),
    (
        3,
        "web push subscriptions, approval push state",
        "
    CREATE TABLE push_subscriptions (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        endpoint TEXT NOT NULL UNIQUE,
        p256dh BLOB NOT NULL,
        auth BLOB NOT NULL,
        user_agent TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        last_success_at INTEGER,
        last_error TEXT,
        last_error_at INTEGER,
        sent INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX push_subscriptions_account ON push_subscriptions(account_id);
    ALTER TABLE approvals ADD COLUMN opened_at INTEGER;
    ALTER TABLE approvals ADD COLUMN pushed_at INTEGER;
    ALTER TABLE approvals ADD COLUMN repushed_at INTEGER;
    ",
    ),
    (
        4,
        "usage shipped by tenants, outcomes of approved actions",
        "
    CREATE TABLE usage_hours (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        hour INTEGER NOT NULL,
        agent TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        requests INTEGER NOT NULL,
        incomplete INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, hour, agent, provider, model)
    );
    ALTER TABLE approvals ADD COLUMN outcome TEXT;
    ALTER TABLE approvals ADD COLUMN outcome_at INTEGER;
    ",
    ),
    (
        5,
        "secret bindings shown with approvals",
        "
    ALTER TABLE approvals ADD COLUMN secret_bindings TEXT NOT NULL DEFAULT '{}';
    ",
    ),
    (
        6,
        "replay nonces, rate-limit windows, durable jobs, hub metadata",
        "
    CREATE TABLE request_nonces (
        tenant_id INTEGER NOT NULL,
        nonce TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, nonce)
    );
    CREATE INDEX request_nonces_expiry ON request_nonces(expires_at);
    CREATE TABLE rate_windows (
        key TEXT PRIMARY KEY,
        window_start INTEGER NOT NULL,
        count INTEGER NOT NULL
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        key TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        run_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        lease_owner TEXT,
        lease_until INTEGER,
        done_at INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX jobs_due ON jobs(done_at, run_at);
    CREATE TABLE hub_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    ",
    ),
    (
        7,
        "orders and their timeline",
        "
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        owner_id INTEGER REFERENCES accounts(id),
        provider TEXT NOT NULL,
        plan TEXT NOT NULL,
        status TEXT NOT NULL,
        server_id TEXT,
        ipv4 TEXT,
        ipv6 TEXT,
        failed_step TEXT,
        last_error TEXT,
        enroll_deadline INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX orders_open_tenant ON orders(tenant)
        WHERE status NOT IN ('failed', 'cancelled');
    CREATE TABLE order_events (
        id INTEGER PRIMARY KEY,
        order_id INTEGER NOT NULL REFERENCES orders(id),
        at INTEGER NOT NULL,
        status TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX order_events_order ON order_events(order_id, id);
    ",
    ),
    (
        8,
        "billing: Stripe events, customers, subscriptions, invoices, meter reports",
        BILLING,
    ),
    (
        9,
        "issue 19, the owner's app: effects and the agent's reason on approvals, autonomy per agent, activity",
        "
    ALTER TABLE approvals ADD COLUMN effects TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE approvals ADD COLUMN agent_reason TEXT;
    CREATE TABLE agent_autonomy (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        agent TEXT NOT NULL,
        level INTEGER NOT NULL CHECK (level BETWEEN 1 AND 3),
        channels TEXT NOT NULL DEFAULT '[]',
        version INTEGER NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, agent)
    );
    CREATE TABLE activity (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        id TEXT NOT NULL,
        agent TEXT NOT NULL,
        tier TEXT NOT NULL,
        summary TEXT NOT NULL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        ran_at INTEGER NOT NULL,
        decided_by TEXT,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE INDEX activity_ran ON activity(tenant_id, ran_at);
    ",
    ),
];

/// PostgreSQL migrations, in order. Version 1 is the schema SQLite reached at its version 6.
pub const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "the hub's schema",
        "
    CREATE TABLE accounts (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        email TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'customer')),
        created_at BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX accounts_email ON accounts (lower(email));
    CREATE TABLE tenants (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        owner_id BIGINT REFERENCES accounts(id),
        public_key BYTEA,
        enrolled_at BIGINT,
        last_heartbeat_at BIGINT,
        created_at BIGINT NOT NULL,
        hostname TEXT,
        agent_version TEXT,
        policy_version BIGINT NOT NULL DEFAULT 0,
        heartbeat TEXT
    );
    CREATE INDEX tenants_owner ON tenants(owner_id);
    CREATE TABLE enrollment_tokens (
        token_hash BYTEA PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id),
        expires_at BIGINT NOT NULL,
        used_at BIGINT,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE sessions (
        token_hash BYTEA PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id),
        agent TEXT NOT NULL,
        tier TEXT NOT NULL,
        reasons TEXT NOT NULL,
        summary TEXT NOT NULL,
        action TEXT NOT NULL,
        action_hash TEXT NOT NULL,
        tenant_created_at BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
        decided_by TEXT,
        decided_at BIGINT,
        scope TEXT,
        reason TEXT,
        opened_at BIGINT,
        pushed_at BIGINT,
        repushed_at BIGINT,
        outcome TEXT,
        outcome_at BIGINT,
        secret_bindings TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX approvals_tenant_status ON approvals(tenant_id, status, received_at);
    CREATE INDEX approvals_pending_expiry ON approvals(status, expires_at);
    CREATE TABLE grants (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id),
        request_id TEXT NOT NULL UNIQUE REFERENCES approvals(id),
        signed TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX grants_tenant_seq ON grants(tenant_id, seq);
    CREATE TABLE policy_bundles (
        version BIGINT PRIMARY KEY,
        bundle TEXT NOT NULL,
        published_by TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE commands (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id),
        kind TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        acked_at BIGINT
    );
    CREATE INDEX commands_open ON commands(tenant_id, acked_at);
    CREATE TABLE audit (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        tenant_id BIGINT,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_tenant ON audit(tenant_id, id);
    CREATE TABLE push_subscriptions (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        endpoint TEXT NOT NULL UNIQUE,
        p256dh BYTEA NOT NULL,
        auth BYTEA NOT NULL,
        user_agent TEXT NOT NULL DEFAULT '',
        created_at BIGINT NOT NULL,
        last_success_at BIGINT,
        last_error TEXT,
        last_error_at BIGINT,
        sent BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX push_subscriptions_account ON push_subscriptions(account_id);
    CREATE TABLE usage_hours (
        tenant_id BIGINT NOT NULL REFERENCES tenants(id),
        hour BIGINT NOT NULL,
        agent TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        requests BIGINT NOT NULL,
        incomplete BIGINT NOT NULL,
        errors BIGINT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cache_read_tokens BIGINT NOT NULL,
        cache_write_tokens BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, hour, agent, provider, model)
    );
    CREATE TABLE request_nonces (
        tenant_id BIGINT NOT NULL,
        nonce TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, nonce)
    );
    CREATE INDEX request_nonces_expiry ON request_nonces(expires_at);
    CREATE TABLE rate_windows (
        key TEXT PRIMARY KEY,
        window_start BIGINT NOT NULL,
        count BIGINT NOT NULL
    );
    CREATE TABLE jobs (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        kind TEXT NOT NULL,
        key TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        run_at BIGINT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        last_error TEXT,
        lease_owner TEXT,
        lease_until BIGINT,
        done_at BIGINT,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX jobs_due ON jobs(run_at) WHERE done_at IS NULL;
    CREATE TABLE hub_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    ",
    ),
    (
        2,
        "orders and their timeline",
        "
    CREATE TABLE orders (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        tenant TEXT NOT NULL,
        owner_id BIGINT REFERENCES accounts(id),
        provider TEXT NOT NULL,
        plan TEXT NOT NULL,
        status TEXT NOT NULL,
        server_id TEXT,
        ipv4 TEXT,
        ipv6 TEXT,
        failed_step TEXT,
        last_error TEXT,
        enroll_deadline BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX orders_open_tenant ON orders(tenant)
        WHERE status NOT IN ('failed', 'cancelled');
    CREATE TABLE order_events (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        order_id BIGINT NOT NULL REFERENCES orders(id),
        at BIGINT NOT NULL,
        status TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX order_events_order ON order_events(order_id, id);
    ",
    ),
    (
        3,
        "billing: Stripe events, customers, subscriptions, invoices, meter reports",
        BILLING,
    ),
    (
        4,
        "issue 19, the owner's app: effects and the agent's reason on approvals, autonomy per agent, activity",
        "
    ALTER TABLE approvals ADD COLUMN effects TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE approvals ADD COLUMN agent_reason TEXT;
    CREATE TABLE agent_autonomy (
        tenant_id BIGINT NOT NULL REFERENCES tenants(id),
        agent TEXT NOT NULL,
        level BIGINT NOT NULL CHECK (level BETWEEN 1 AND 3),
        channels TEXT NOT NULL DEFAULT '[]',
        version BIGINT NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, agent)
    );
    CREATE TABLE activity (
        tenant_id BIGINT NOT NULL REFERENCES tenants(id),
        id TEXT NOT NULL,
        agent TEXT NOT NULL,
        tier TEXT NOT NULL,
        summary TEXT NOT NULL,
        status TEXT NOT NULL,
        exit_code BIGINT,
        ran_at BIGINT NOT NULL,
        decided_by TEXT,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE INDEX activity_ran ON activity(tenant_id, ran_at);
    ",
    ),
];

/// Billing (issue 18): Stripe events by id, customers, onboarding answers, subscriptions,
/// invoices and the meter-event outbox. The same text on both engines (BIGINT is an integer
/// on SQLite).
const BILLING: &str = "
    CREATE TABLE stripe_events (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        created BIGINT NOT NULL,
        body TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        handled_at BIGINT,
        outcome TEXT
    );
    CREATE TABLE billing_customers (
        account_id BIGINT PRIMARY KEY REFERENCES accounts(id),
        customer_id TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE billing_onboarding (
        account_id BIGINT PRIMARY KEY REFERENCES accounts(id),
        tenant TEXT NOT NULL UNIQUE,
        business TEXT NOT NULL,
        tools TEXT NOT NULL,
        agent TEXT NOT NULL,
        llm_provider TEXT NOT NULL,
        free_order_id BIGINT REFERENCES orders(id),
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE billing_subscriptions (
        id TEXT PRIMARY KEY,
        account_id BIGINT REFERENCES accounts(id),
        customer_id TEXT NOT NULL,
        status TEXT NOT NULL,
        price_id TEXT,
        current_period_start BIGINT,
        current_period_end BIGINT,
        cancel_at_period_end BIGINT NOT NULL DEFAULT 0,
        ended_at BIGINT,
        grace_since BIGINT,
        order_id BIGINT REFERENCES orders(id),
        created BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX billing_subscriptions_account ON billing_subscriptions(account_id, created);
    CREATE TABLE billing_invoices (
        id TEXT PRIMARY KEY,
        account_id BIGINT REFERENCES accounts(id),
        customer_id TEXT NOT NULL,
        subscription_id TEXT,
        status TEXT NOT NULL,
        amount_due BIGINT NOT NULL,
        amount_paid BIGINT NOT NULL,
        currency TEXT NOT NULL,
        number TEXT,
        hosted_invoice_url TEXT,
        created BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX billing_invoices_account ON billing_invoices(account_id, created);
    CREATE TABLE meter_reports (
        identifier TEXT PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id),
        hour BIGINT NOT NULL,
        agent TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        token_type TEXT NOT NULL,
        value BIGINT NOT NULL,
        customer_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        sent_at BIGINT,
        attempts BIGINT NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE INDEX meter_reports_bucket ON meter_reports(tenant_id, hour, agent, provider, model);
    CREATE INDEX meter_reports_pending ON meter_reports(hour) WHERE sent_at IS NULL;
";
