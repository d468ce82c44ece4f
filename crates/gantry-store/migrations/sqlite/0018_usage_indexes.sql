-- Usage reports over many step runs (`gantry usage`, GET /api/v1/usage):
-- * `step_runs_usage` holds every column the sums read, in run and step order, so a report
--   sums each run's step runs straight from the index (no table reads, no sort of every row);
-- * `step_runs_gpu_usage` has only the rows that can hold GPU-hours (GPU steps, and cache hits
--   whose original may have had GPUs), for the GPU-hours by model.
CREATE INDEX step_runs_usage ON step_runs (run_id, step, finished_at_ms, status, cached_from,
    started_at_ms, wall_ms, requested_cpu_millis, requested_memory_bytes, requested_gpu,
    cpu_micros, peak_memory_bytes, gpu_idle_ms);
CREATE INDEX step_runs_gpu_usage ON step_runs (finished_at_ms)
    WHERE requested_gpu > 0 OR cached_from IS NOT NULL;
