"""The repository itself: the README's commands are CI's, the lock is a lock, the layering and size rules hold."""
