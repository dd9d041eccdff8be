"""The ROS 2 layer: message conversion, nodes. Only this package imports rclpy."""
