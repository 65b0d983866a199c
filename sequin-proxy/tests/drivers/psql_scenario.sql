-- Driver matrix scenario for psql (libpq) through the proxy.
\set ON_ERROR_STOP 1
\set VERBOSITY verbose
drop table if exists psql_item;
create table psql_item (id int primary key, name text not null);
insert into psql_item values (1, 'one'), (2, 'two');
\set wanted 2
select 'param:' || name from psql_item where id = :wanted;
prepare pick(int) as select 'prepared:' || name from psql_item where id = $1;
execute pick(1);
begin;
insert into psql_item values (3, 'rolled back');
rollback;
select 'count:' || count(*) from psql_item;
\copy psql_item from stdin
10	ten
11	eleven
\.
\copy (select 'copied:' || id from psql_item where id >= 10 order by id) to stdout
listen psql_chan;
notify psql_chan, 'hello from psql';
select 'after notify';
\set ON_ERROR_STOP 0
insert into psql_item values (1, 'dup');
