-- Generated from leopard_etl.warehouse.schema (schema version 3); do not edit.

CREATE TABLE cohort_attrition (
	step_no INTEGER NOT NULL, 
	step VARCHAR(32) NOT NULL, 
	n INTEGER NOT NULL, 
	PRIMARY KEY (step_no)
);

CREATE TABLE crt_course (
	patient_id VARCHAR(128) NOT NULL, 
	crt_type VARCHAR(16) NOT NULL, 
	crt_start DATE NOT NULL, 
	crt_end DATE NOT NULL, 
	first_platinum_date DATE, 
	protocol_deviation VARCHAR(64), 
	platinum_unverified BOOLEAN, 
	source_system VARCHAR(16) NOT NULL, 
	source_ids TEXT NOT NULL, 
	PRIMARY KEY (patient_id)
);

CREATE TABLE derive_pending (
	patient_id VARCHAR(128) NOT NULL, 
	run_id VARCHAR(64) NOT NULL, 
	PRIMARY KEY (patient_id)
);

CREATE TABLE diagnosis (
	patient_id VARCHAR(128) NOT NULL, 
	diagnosis_date DATE NOT NULL, 
	date_precision VARCHAR(8) NOT NULL, 
	histology_code VARCHAR(64), 
	laterality VARCHAR(16), 
	stage VARCHAR(16), 
	stage_date DATE, 
	stage_iii BOOLEAN NOT NULL, 
	source_system VARCHAR(16) NOT NULL, 
	source_ids TEXT NOT NULL, 
	PRIMARY KEY (patient_id)
);

CREATE TABLE durvalumab_course (
	patient_id VARCHAR(128) NOT NULL, 
	first_dose DATE NOT NULL, 
	last_dose DATE NOT NULL, 
	n_doses INTEGER NOT NULL, 
	days_from_crt_end INTEGER NOT NULL, 
	source_system VARCHAR(16) NOT NULL, 
	source_ids TEXT NOT NULL, 
	PRIMARY KEY (patient_id)
);

CREATE TABLE etl_run (
	run_id VARCHAR(64) NOT NULL, 
	started_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	ended_at TIMESTAMP WITH TIME ZONE, 
	source TEXT NOT NULL, 
	source_system VARCHAR(16) NOT NULL, 
	mode VARCHAR(16) NOT NULL, 
	watermark TEXT, 
	status VARCHAR(16) NOT NULL, 
	n_read INTEGER, 
	n_events INTEGER, 
	n_quarantined INTEGER, 
	n_out_of_scope INTEGER, 
	n_patients_changed INTEGER, 
	error TEXT, 
	n_in_scope INTEGER, 
	out_of_scope_reasons TEXT, 
	PRIMARY KEY (run_id)
);

CREATE TABLE lesion (
	patient_id VARCHAR(128) NOT NULL, 
	lesion_key VARCHAR(256) NOT NULL, 
	site VARCHAR(32) NOT NULL, 
	laterality VARCHAR(16), 
	first_date DATE NOT NULL, 
	n_records INTEGER NOT NULL, 
	field_relation VARCHAR(16) NOT NULL, 
	source_system VARCHAR(16) NOT NULL, 
	source_ids TEXT NOT NULL, 
	PRIMARY KEY (patient_id, lesion_key)
);

CREATE TABLE outcome (
	patient_id VARCHAR(128) NOT NULL, 
	death BOOLEAN NOT NULL, 
	death_date DATE, 
	last_alive_date DATE, 
	os_months DOUBLE PRECISION, 
	prs_months DOUBLE PRECISION, 
	cutoff DATE NOT NULL, 
	death_date_unknown BOOLEAN, 
	source_system VARCHAR(16) NOT NULL, 
	source_ids TEXT NOT NULL, 
	PRIMARY KEY (patient_id)
);

CREATE TABLE patient (
	patient_id VARCHAR(128) NOT NULL, 
	birth_date DATE, 
	sex VARCHAR(16), 
	in_cohort BOOLEAN NOT NULL, 
	exclusion_reason VARCHAR(32), 
	source_system VARCHAR(16) NOT NULL, 
	source_ids TEXT NOT NULL, 
	PRIMARY KEY (patient_id)
);

CREATE TABLE quarantine (
	run_id VARCHAR(64) NOT NULL, 
	source_system VARCHAR(16) NOT NULL, 
	location TEXT NOT NULL, 
	reason TEXT NOT NULL, 
	record TEXT, 
	record_id TEXT
);

CREATE TABLE recurrence (
	patient_id VARCHAR(128) NOT NULL, 
	recurrence_date DATE NOT NULL, 
	pattern VARCHAR(16) NOT NULL, 
	n_lesions INTEGER NOT NULL, 
	sites TEXT, 
	field VARCHAR(16) NOT NULL, 
	source_system VARCHAR(16) NOT NULL, 
	source_ids TEXT NOT NULL, 
	PRIMARY KEY (patient_id)
);

CREATE TABLE rt_course (
	patient_id VARCHAR(128) NOT NULL, 
	start_date DATE NOT NULL, 
	end_date DATE NOT NULL, 
	n_records INTEGER NOT NULL, 
	field_sites TEXT, 
	source_system VARCHAR(16) NOT NULL, 
	source_ids TEXT NOT NULL, 
	PRIMARY KEY (patient_id)
);

CREATE TABLE salvage_therapy (
	patient_id VARCHAR(128) NOT NULL, 
	category VARCHAR(16) NOT NULL, 
	start_date DATE, 
	components TEXT, 
	source_system VARCHAR(16) NOT NULL, 
	source_ids TEXT NOT NULL, 
	PRIMARY KEY (patient_id)
);

CREATE TABLE schema_version (
	version INTEGER NOT NULL, 
	applied_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (version)
);

CREATE TABLE source_event (
	source VARCHAR(512) NOT NULL, 
	patient_id VARCHAR(128) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	groups TEXT NOT NULL, 
	system TEXT NOT NULL, 
	code TEXT NOT NULL, 
	start DATE NOT NULL, 
	"end" DATE, 
	precision VARCHAR(8) NOT NULL, 
	site VARCHAR(32), 
	laterality VARCHAR(16), 
	body_site TEXT, 
	value TEXT, 
	lesion_id TEXT, 
	ingredient TEXT, 
	fractions INTEGER, 
	dose_cgy DOUBLE PRECISION, 
	route VARCHAR(16), 
	content_hash VARCHAR(64) NOT NULL, 
	run_id VARCHAR(64) NOT NULL, 
	PRIMARY KEY (source)
);

CREATE INDEX ix_source_event_patient ON source_event (patient_id);

CREATE TABLE source_patient (
	patient_id VARCHAR(128) NOT NULL, 
	birth_date DATE, 
	sex VARCHAR(16), 
	death_date DATE, 
	source VARCHAR(512) NOT NULL, 
	deceased BOOLEAN, 
	content_hash VARCHAR(64) NOT NULL, 
	run_id VARCHAR(64) NOT NULL, 
	PRIMARY KEY (patient_id)
);

INSERT INTO schema_version (version, applied_at) VALUES (3, CURRENT_TIMESTAMP);
