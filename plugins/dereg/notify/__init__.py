"""Customer notices: who gets one, what it says, delivery exactly once, and the record of each."""
