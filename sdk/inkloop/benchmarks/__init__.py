"""Benchmarks over the whole loop: throughput (``inkloop bench``) and the loop simulation
(``inkloop loop simulate``)."""
