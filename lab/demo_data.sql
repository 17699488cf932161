-- The reference platform's demo schema: a multi-tenant jewelry shop. Every row carries its
-- tenant. Generated data, deterministic (setseed), sized so maintenance and slow-query
-- runbooks have something to find: orders has no index on customer_id on purpose.
SELECT setseed(0.42);

CREATE TABLE tenants (
    id text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name text NOT NULL,
    plan text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    email text NOT NULL,
    full_name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, email)
);
CREATE TABLE inventory_items (
    id bigserial PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    sku text NOT NULL,
    name text NOT NULL,
    metal text NOT NULL,
    carat numeric(5, 2),
    price_cents integer NOT NULL CHECK (price_cents > 0),
    stock integer NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, sku)
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    customer_id bigint NOT NULL REFERENCES customers (id),
    item_id bigint NOT NULL REFERENCES inventory_items (id),
    status text NOT NULL,
    total_cents integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_tenant_created ON orders (tenant_id, created_at);
CREATE TABLE payments (
    id bigserial PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    order_id bigint NOT NULL REFERENCES orders (id),
    amount_cents integer NOT NULL,
    method text NOT NULL,
    status text NOT NULL,
    paid_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_tenant ON payments (tenant_id);

INSERT INTO tenants (id, name, plan) VALUES
    ('acme-jewels', 'Acme Jewels', 'business'),
    ('brilliant-gems', 'Brilliant Gems', 'starter'),
    ('crown-diamonds', 'Crown Diamonds', 'enterprise'),
    ('dazzle-co', 'Dazzle & Co', 'business'),
    ('emerald-house', 'Emerald House', 'starter');

INSERT INTO customers (tenant_id, email, full_name, created_at)
SELECT t.id, format('customer%s@%s.example', g, t.id), format('Customer %s', g),
       now() - (random() * interval '700 days')
FROM tenants t, generate_series(1, :customers_per_tenant) g;

INSERT INTO inventory_items (tenant_id, sku, name, metal, carat, price_cents, stock)
SELECT t.id, format('SKU-%s', g),
       (ARRAY['Ring', 'Necklace', 'Bracelet', 'Earrings', 'Pendant'])[1 + g % 5] || ' ' || g,
       (ARRAY['gold', 'silver', 'platinum', 'rose gold'])[1 + g % 4],
       round((random() * 3)::numeric, 2), 5000 + (random() * 500000)::int, (random() * 40)::int
FROM tenants t, generate_series(1, :items_per_tenant) g;

INSERT INTO orders (tenant_id, customer_id, item_id, status, total_cents, created_at)
SELECT c.tenant_id, c.id,
       (SELECT i.id FROM inventory_items i WHERE i.tenant_id = c.tenant_id
        ORDER BY i.id OFFSET (c.id * 7 + g) % :items_per_tenant LIMIT 1),
       (ARRAY['paid', 'shipped', 'delivered', 'refunded'])[1 + (c.id + g) % 4],
       5000 + ((c.id * 31 + g * 17) % 500000), now() - (random() * interval '365 days')
FROM customers c, generate_series(1, :orders_per_customer) g;

INSERT INTO payments (tenant_id, order_id, amount_cents, method, status, paid_at)
SELECT o.tenant_id, o.id, o.total_cents,
       (ARRAY['card', 'transfer', 'paypal'])[1 + o.id % 3],
       CASE WHEN o.status = 'refunded' THEN 'refunded' ELSE 'captured' END,
       o.created_at + interval '5 minutes'
FROM orders o;

ANALYZE;
