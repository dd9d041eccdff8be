"""ament_python build script for streamdeq_ros."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'streamdeq_ros'

setup(
    name=PACKAGE,
    version='0.2.0',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={PACKAGE: ['models/*/model.pt', 'models/*/model_card.json',
                            'models/*/train_log.csv']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml') + glob('config/*.xml') +
         glob('config/*.rviz')),
    ],
    install_requires=['setuptools', 'numpy', 'torch'],
    zip_safe=True,
    maintainer='streamdeq_ros maintainers',
    maintainer_email='maintainers@streamdeq-ros.invalid',
    description='StreamDEQ streaming perception (warm-started deep equilibrium models) for ROS 2',
    license='MIT',
    # setuptools >= 72 ignores tests_require; colcon test reads the 'test' extra
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'streamdeq = streamdeq_ros.tools.cli:main',
            'streamdeq_video_source = streamdeq_ros.ros.video_source:main',
            'streamdeq_node = streamdeq_ros.ros.main:main',
        ],
    },
)
