"""The demo company: a children's training school whose database Dereg closes down."""
