-- With several replicas, one queues alerts at a time: the others would read and decode every
-- attempt too, only to find the cursor moved. The holder renews its lease while it runs; when
-- it stops renewing (stopped, crashed, cut off), another takes over once the lease has run out.
-- The cursor's compare-and-set still keeps two workers from queueing one attempt twice.
ALTER TABLE alert_cursor ADD COLUMN holder TEXT;
ALTER TABLE alert_cursor ADD COLUMN held_until INTEGER;
