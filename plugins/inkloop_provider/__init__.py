"""inkloop Airflow provider."""
