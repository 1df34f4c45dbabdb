-- Which process recorded a run (`host:pid`), so a run left "running" by a
-- killed process is recognised and closed at the next start.
ALTER TABLE runs ADD COLUMN owner TEXT;
