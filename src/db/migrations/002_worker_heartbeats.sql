-- graphile-worker leaves a SIGKILLed worker's jobs locked for hours. Workers
-- record themselves here, so a starting process can release dead workers' locks.
CREATE TABLE worker_heartbeats (
  worker_id  text PRIMARY KEY,
  host       text NOT NULL,
  pid        integer NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  seen_at    timestamptz NOT NULL DEFAULT now()
);
