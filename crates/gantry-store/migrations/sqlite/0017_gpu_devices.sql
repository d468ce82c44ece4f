-- The GPUs an attempt was placed on (NVML indexes, comma-separated), so `gantry gpus` can say
-- which step holds each device while it runs.
ALTER TABLE step_runs ADD COLUMN gpu_devices TEXT;
