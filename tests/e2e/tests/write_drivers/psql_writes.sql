-- Write-through scenario for psql through the Sequin proxy (simple
-- protocol). Run with -X -A -t and ON_ERROR_STOP off: the rejected
-- statements are part of the scenario; write_drivers.rs checks the output.
\set VERBOSITY verbose
insert into salesforce.contact (first_name, last_name, email) values ('Andrea', 'Psql-Palladio', 'andrea@psql.example') returning 'inserted:' || id || ':' || name;
insert into salesforce.contact (last_name) values ('Psql-Scamozzi'), ('Psql-Longhena'), ('Psql-Sansovino');
update salesforce.contact set title = 'Architect' where last_name like 'Psql-%' and last_name <> 'Psql-Sansovino';
delete from salesforce.contact where last_name = 'Psql-Sansovino';
insert into salesforce.contact (first_name, last_name, email) values ('Andrea','Psql-Invalid','andrea__invalid') returning id;
insert into salesforce.contact (last_name, account_id) values ('Psql-Orphan', '001Dn0000009999') returning id;
-- Two statements in one Query message.
update salesforce.contact set department = 'Vicenza' where last_name = 'Psql-Palladio'; select 'two-in-one:' || count(*) from salesforce.contact where department = 'Vicenza';
begin;
insert into salesforce.contact (last_name, account_id) values ('Psql-Orphan', '001Dn0000009999');
select 'not reached';
rollback;
select 'after-rollback:' || count(*) from salesforce.contact where last_name like 'Psql-%';
