//! End-to-end tests of Sequin live in `tests/`: real Postgres (a throwaway
//! cluster or `DATABASE_URL`), the API simulators, real drivers.
