"""Operations: usage and cost, budgets."""
