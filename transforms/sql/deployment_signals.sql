-- deployment_signals: each completed production deployment against what its
-- service's errors did after it — one row per deployment and signal.
--
-- Signals (docs/ml.md, Suspect deployments):
--   new_issue     error-tracker issues of the component first seen in the
--                 24 hours after the deployment finished (and before its
--                 next one): each issue is blamed on the latest production
--                 deployment that finished before it was first seen. It
--                 *degrades* when the project's events on the day the issue
--                 was first seen or the next score 5 or more against the 14
--                 days before (robust z-score, as below) and reach 1.5 times
--                 their median, with at least 7 days to compare.
--   error_rate_hourly   the service's failed / all requests and p95 latency
--   latency_p95_hourly  an hour, in the 6 whole hours after the deployment's
--                 hour against the 24 hours before it (median, and the
--                 median absolute deviation scaled to a standard
--                 deviation: a robust z-score) and the same hour a week
--                 before. An hour degrades at a score of 5 or more, at
--                 least double the median and double the hour a week
--                 before; the signal degrades when an hour after does and
--                 the last hour before the deployment did not (the change
--                 starts after it: a fix shipped during an incident is not
--                 its cause), with at least 12 hours to compare. It is
--                 blamed on the latest production deployment that finished
--                 before the end of the first degraded hour.
--   error_events  the project's events a day, error_rate and latency_p95
--   error_rate    the service's failed / all requests and p95 latency a day:
--   latency_p95   the worse of the deployment's day and the next against the
--                 14 days before (median and robust z-score, as above) and
--                 against the same weekday a week before. They degrade at a
--                 score of 5 or more and at least double the median. Days
--                 are too coarse to tell which of a day's deployments moved
--                 them, so they describe.
-- A deployment is *suspect* when a new issue or an hourly signal blamed on
-- it degraded.
WITH prod AS (
    SELECT deployment_id, entity_ref, environment, finished_at,
           CAST(finished_at AS DATE) AS day,
           lead(finished_at) OVER (PARTITION BY entity_ref
                                   ORDER BY finished_at, deployment_id) AS next_finished_at
    FROM dora_deployments
    WHERE completed AND entity_ref IS NOT NULL
),
issues AS (
    SELECT source, issue_id, max(entity_ref) AS entity_ref, min(first_seen_at) AS first_seen_at
    FROM error_issues_daily
    WHERE entity_ref IS NOT NULL AND first_seen_at IS NOT NULL
    GROUP BY source, issue_id
),
blamed AS (
    SELECT source, issue_id, deployment_id, first_seen_at
    FROM (
        SELECT i.source, i.issue_id, p.deployment_id, i.first_seen_at,
               row_number() OVER (PARTITION BY i.source, i.issue_id
                                  ORDER BY p.finished_at DESC, p.deployment_id DESC) AS rank
        FROM issues i
        JOIN prod p ON p.entity_ref = i.entity_ref
        WHERE p.finished_at <= i.first_seen_at
          AND i.first_seen_at < p.finished_at + INTERVAL '24 hours'
          AND (p.next_finished_at IS NULL OR i.first_seen_at < p.next_finished_at)
    ) ranked
    WHERE rank = 1
),
daily AS (
    SELECT entity_ref, date, 'error_events' AS signal, CAST(sum(event_count) AS DOUBLE) AS value
    FROM error_counts_daily WHERE entity_ref IS NOT NULL
    GROUP BY entity_ref, date
    UNION ALL
    SELECT entity_ref, date, 'error_rate' AS signal,
           CAST(sum(error_count) AS DOUBLE) / CAST(nullif(sum(request_count), 0) AS DOUBLE) AS value
    FROM service_metrics_daily WHERE entity_ref IS NOT NULL
    GROUP BY entity_ref, date
    UNION ALL
    SELECT entity_ref, date, 'latency_p95' AS signal, max(latency_p95_seconds) AS value
    FROM service_metrics_daily WHERE entity_ref IS NOT NULL
    GROUP BY entity_ref, date
),
-- The days around each anchor — a deployment's day, a new issue's first
-- day (its project's events only) — against the 14 days before: one
-- robust z-score for both.
around AS (
    SELECT 'deployment' AS kind, p.deployment_id AS anchor, d.signal, d.date, d.value,
           d.date < p.day AS before, d.date = p.day - INTERVAL '7 days' AS week_before
    FROM prod p
    JOIN daily d ON d.entity_ref = p.entity_ref
    WHERE d.date >= p.day - INTERVAL '14 days' AND d.date <= p.day + INTERVAL '1 day'
      AND d.value IS NOT NULL
    UNION ALL
    SELECT 'issue' AS kind, i.source || '/' || i.issue_id AS anchor, d.signal, d.date, d.value,
           d.date < CAST(i.first_seen_at AS DATE) AS before, false AS week_before
    FROM issues i
    JOIN daily d ON d.entity_ref = i.entity_ref AND d.signal = 'error_events'
    WHERE d.date >= CAST(i.first_seen_at AS DATE) - INTERVAL '14 days'
      AND d.date <= CAST(i.first_seen_at AS DATE) + INTERVAL '1 day'
      AND d.value IS NOT NULL
),
baseline AS (
    SELECT kind, anchor, signal,
           median(value) FILTER (WHERE before) AS median,
           count(*) FILTER (WHERE before) AS days,
           max(value) FILTER (WHERE NOT before) AS after,
           max(value) FILTER (WHERE week_before) AS week_before
    FROM around
    GROUP BY kind, anchor, signal
),
spread AS (
    SELECT a.kind, a.anchor, a.signal, median(abs(a.value - b.median)) AS mad
    FROM around a
    JOIN baseline b ON b.kind = a.kind AND b.anchor = a.anchor AND b.signal = a.signal
    WHERE a.before
    GROUP BY a.kind, a.anchor, a.signal
),
-- Counts of events have a floor of one event in the spread (a quiet
-- project's first error is not an infinite jump); rates and latencies
-- only guard against zero.
scored AS (
    SELECT b.kind, b.anchor, b.signal, b.median AS before, b.after, b.week_before, b.days,
           (b.after - b.median)
               / greatest(1.4826 * s.mad, 0.05 * abs(b.median),
                          CASE WHEN b.signal = 'error_events' THEN 1.0 ELSE 1e-9 END) AS score
    FROM baseline b
    LEFT JOIN spread s ON s.kind = b.kind AND s.anchor = b.anchor AND s.signal = b.signal
),
new_issue AS (
    SELECT b.deployment_id,
           max(s.before) AS before,
           max(s.after) AS after,
           max(s.score) AS score,
           min(b.first_seen_at) AS changed_at,
           array_agg(b.issue_id ORDER BY b.issue_id) AS issue_ids,
           bool_or(coalesce(s.days >= 7 AND s.score >= 5.0 AND s.after >= 1.5 * s.before, false))
               AS degraded,
           bool_and(s.days IS NULL OR s.days < 7) AS unknown
    FROM blamed b
    LEFT JOIN scored s
      ON s.kind = 'issue' AND s.anchor = b.source || '/' || b.issue_id AND s.signal = 'error_events'
    GROUP BY b.deployment_id
),
hourly AS (
    SELECT entity_ref, hour, CAST(date_part('epoch', hour) AS BIGINT) AS at, 'error_rate_hourly' AS signal,
           CAST(sum(error_count) AS DOUBLE) / CAST(nullif(sum(request_count), 0) AS DOUBLE) AS value
    FROM service_metrics_hourly WHERE entity_ref IS NOT NULL
    GROUP BY entity_ref, hour
    UNION ALL
    SELECT entity_ref, hour, CAST(date_part('epoch', hour) AS BIGINT) AS at, 'latency_p95_hourly' AS signal,
           max(latency_p95_seconds) AS value
    FROM service_metrics_hourly WHERE entity_ref IS NOT NULL
    GROUP BY entity_ref, hour
),
-- Hours from the deployment's own (0, left out: it began before the
-- deployment): -24 to -1 before, 1 to 6 after, and the after hours a week
-- earlier. Joined on the hour's start, so each deployment reads 36 hours,
-- not its service's whole history.
hour_offsets AS (
    SELECT k FROM (SELECT unnest(range(-24, 7)) AS k) o WHERE k <> 0
),
hour_windows AS (
    SELECT p.deployment_id, p.entity_ref, o.k, false AS week,
           CAST(date_part('epoch', date_trunc('hour', p.finished_at)) AS BIGINT) + o.k * 3600 AS at
    FROM prod p CROSS JOIN hour_offsets o
    UNION ALL
    SELECT p.deployment_id, p.entity_ref, o.k, true AS week,
           CAST(date_part('epoch', date_trunc('hour', p.finished_at)) AS BIGINT) + (o.k - 168) * 3600 AS at
    FROM prod p CROSS JOIN hour_offsets o
    WHERE o.k > 0
),
hour_values AS (
    SELECT w.deployment_id, w.k, w.week, h.signal, h.hour, h.value
    FROM hour_windows w
    JOIN hourly h ON h.entity_ref = w.entity_ref AND h.at = w.at
    WHERE h.value IS NOT NULL
),
hour_baseline AS (
    SELECT deployment_id, signal,
           median(value) FILTER (WHERE NOT week AND k < 0) AS median,
           count(*) FILTER (WHERE NOT week AND k < 0) AS hours
    FROM hour_values
    GROUP BY deployment_id, signal
),
hour_spread AS (
    SELECT v.deployment_id, v.signal, median(abs(v.value - b.median)) AS mad
    FROM hour_values v
    JOIN hour_baseline b ON b.deployment_id = v.deployment_id AND b.signal = v.signal
    WHERE NOT v.week AND v.k < 0
    GROUP BY v.deployment_id, v.signal
),
hour_z AS (
    SELECT v.deployment_id, v.signal, v.k, v.hour, v.value, wk.value AS week_value,
           b.median,
           (v.value - b.median) / greatest(1.4826 * s.mad, 0.05 * abs(b.median), 1e-9) AS score
    FROM hour_values v
    JOIN hour_baseline b ON b.deployment_id = v.deployment_id AND b.signal = v.signal
    LEFT JOIN hour_spread s ON s.deployment_id = v.deployment_id AND s.signal = v.signal
    LEFT JOIN hour_values wk
      ON wk.deployment_id = v.deployment_id AND wk.signal = v.signal AND wk.k = v.k AND wk.week
    WHERE NOT v.week AND (v.k > 0 OR v.k = -1)
),
hour_scored AS (
    SELECT deployment_id, signal, k, hour, value, week_value, score,
           coalesce(score >= 5.0
                    AND value >= 2.0 * median
                    AND (week_value IS NULL OR value >= 2.0 * week_value), false) AS high
    FROM hour_z
),
hour_signals AS (
    SELECT c.deployment_id, c.signal, b.median AS before, b.hours,
           max(c.value) FILTER (WHERE c.k > 0) AS after,
           max(c.week_value) FILTER (WHERE c.k > 0) AS week_before,
           max(c.score) FILTER (WHERE c.k > 0) AS score,
           min(c.hour) FILTER (WHERE c.k > 0 AND c.high) AS first_high,
           coalesce(bool_or(c.high) FILTER (WHERE c.k = -1), false) AS already
    FROM hour_scored c
    JOIN hour_baseline b ON b.deployment_id = c.deployment_id AND b.signal = c.signal
    GROUP BY c.deployment_id, c.signal, b.median, b.hours
),
hour_verdicts AS (
    SELECT h.deployment_id, h.signal, h.before, h.after, h.week_before, h.score,
           CASE
               WHEN h.hours < 12 OR h.after IS NULL THEN 'unknown'
               WHEN h.first_high IS NOT NULL AND NOT h.already THEN 'degraded'
               ELSE 'normal'
           END AS verdict,
           CASE WHEN h.first_high IS NOT NULL AND NOT h.already THEN h.first_high END AS changed_at,
           p.next_finished_at
    FROM hour_signals h
    JOIN prod p ON p.deployment_id = h.deployment_id
),
suspects AS (
    SELECT deployment_id FROM new_issue WHERE degraded
    UNION
    SELECT deployment_id FROM hour_verdicts
    WHERE verdict = 'degraded'
      AND (next_finished_at IS NULL OR next_finished_at >= changed_at + INTERVAL '1 hour')
)
SELECT p.deployment_id, p.entity_ref, p.environment, p.finished_at,
       'new_issue' AS signal,
       n.before, n.after, CAST(NULL AS DOUBLE) AS week_before, n.score,
       CASE WHEN n.degraded THEN 'degraded' WHEN n.unknown THEN 'unknown' ELSE 'normal' END AS verdict,
       n.changed_at, n.issue_ids,
       x.deployment_id IS NOT NULL AS suspect
FROM prod p
JOIN new_issue n ON n.deployment_id = p.deployment_id
LEFT JOIN suspects x ON x.deployment_id = p.deployment_id
UNION ALL
SELECT p.deployment_id, p.entity_ref, p.environment, p.finished_at,
       h.signal, h.before, h.after, h.week_before, h.score, h.verdict,
       h.changed_at,
       NULL AS issue_ids,
       x.deployment_id IS NOT NULL AS suspect
FROM prod p
JOIN hour_verdicts h ON h.deployment_id = p.deployment_id
LEFT JOIN suspects x ON x.deployment_id = p.deployment_id
UNION ALL
SELECT p.deployment_id, p.entity_ref, p.environment, p.finished_at,
       s.signal, s.before, s.after, s.week_before, s.score,
       CASE
           WHEN s.days < 7 OR s.after IS NULL OR s.score IS NULL THEN 'unknown'
           WHEN s.score >= 5.0 AND s.after >= 2.0 * s.before
                AND (s.week_before IS NULL OR s.after >= 2.0 * s.week_before) THEN 'degraded'
           ELSE 'normal'
       END AS verdict,
       NULL AS changed_at,
       NULL AS issue_ids,
       x.deployment_id IS NOT NULL AS suspect
FROM prod p
JOIN scored s ON s.kind = 'deployment' AND s.anchor = p.deployment_id
LEFT JOIN suspects x ON x.deployment_id = p.deployment_id
