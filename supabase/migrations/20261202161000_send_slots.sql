-- Send slots (issue 12): one row per business number holding the next free broadcast send time. A claim of
-- broadcast recipients locks it, hands each recipient its own send time (1 / rate apart) and advances it, so all
-- processes together send a number's broadcasts no faster than its share of the throughput.
CREATE TABLE send_slots (
    phone_number_id  text        PRIMARY KEY,
    next_at          timestamptz NOT NULL
);
COMMENT ON TABLE send_slots IS 'Per business number: the next free broadcast send time, advanced by each claim';
ALTER TABLE send_slots ENABLE ROW LEVEL SECURITY;
