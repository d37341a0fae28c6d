"""Trigger functions: schedules fired by EventBridge Scheduler."""
