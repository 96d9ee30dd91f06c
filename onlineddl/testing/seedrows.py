"""Row numbers for seeding tables in SQL on MySQL and MariaDB alike: the test suite,
scripts/bench and scripts/demo seed through it."""

from __future__ import annotations


def numbers(last: int, first: int = 1) -> str:
    """A derived table of the integers first..last in column `seq`, for seeding rows with
    INSERT ... SELECT ... FROM {numbers(600)}. Portable: MariaDB's seq_1_to_N engine does
    not exist on MySQL, and a recursive CTE stops at MySQL's cte_max_recursion_depth (1000)
    unless the session raises it; a cross join of digit tables needs neither."""
    count = last - first + 1
    if count < 1:
        raise ValueError(f"empty range {first}..{last}")
    digits = "(SELECT 0 AS d UNION ALL " + " UNION ALL ".join(
        f"SELECT {d}" for d in range(1, 10)) + ")"
    places = len(str(count - 1)) if count > 1 else 1
    offset = " + ".join(f"{10 ** i} * p{i}.d" for i in range(places))
    joins = " CROSS JOIN ".join(f"{digits} AS p{i}" for i in range(places))
    return (f"(SELECT {offset} + {first} AS seq FROM {joins} "
            f"WHERE {offset} < {count}) AS numbers")
