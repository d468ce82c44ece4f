-- MLflow registry compatibility.
--
-- Version numbers are never reused: a model keeps the highest number it ever gave, so deleting
-- its newest version does not hand that number to the next registration.
ALTER TABLE models ADD COLUMN last_version BIGINT NOT NULL DEFAULT 0;
UPDATE models SET last_version =
    COALESCE((SELECT MAX(version) FROM model_versions WHERE model_versions.model = models.name), 0);

-- MLflow's model version stages (None, Staging, Production, Archived): deprecated by MLflow in
-- favour of aliases, still used by many clients.
ALTER TABLE model_versions ADD COLUMN stage TEXT NOT NULL DEFAULT 'None';
